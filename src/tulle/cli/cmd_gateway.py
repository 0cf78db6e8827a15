"""`tulle gateway run`: an ingress gateway, a standalone Envoy with its own agent and identity,
serving one listener of a Gateway resource."""

from __future__ import annotations

import ipaddress
import os
import stat
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tulle.cli.cmd_run import _check_name
from tulle.client import ApiClient
from tulle.errors import NotFoundError, UsageError

gateway = typer.Typer(help="Ingress gateways: a way into the mesh from outside.",
                      no_args_is_help=True)

_EXAMPLE = ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
            "metadata: {{name: {name}, namespace: {namespace}}}\n"
            "spec:\n  listeners:\n  - {{name: {listener}, port: {port}, protocol: {protocol}}}")


def register(app: typer.Typer) -> None:
    app.add_typer(gateway, name="gateway")


@gateway.command()
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="The Gateway resource this gateway serves; also "
                                           "its service account (identity)")],
    port: Annotated[int, typer.Option(help="The port to serve: a listener of the Gateway",
                                      min=1, max=65535)],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    tls_cert: Annotated[Path | None, typer.Option(
        help="PEM certificate chain for TLS from outside (a file on this host)")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="Its private key (a file on this host, readable by its owner only)")] = None,
    listen_address: Annotated[str, typer.Option(
        help="Where to listen: 0.0.0.0 for every interface")] = "0.0.0.0",
    instance: Annotated[str | None, typer.Option(
        "--instance", help="Instance name, unique in the namespace [default: NAME-gw]")
    ] = None,
    xds_protocol: Annotated[str, typer.Option(
        help="How the gateway talks xDS: delta or sotw")] = "delta",
    envoy_binary: Annotated[str | None, typer.Option(
        envvar="TULLE_ENVOY_BINARY", help="Use this Envoy binary instead of the bundled one")
    ] = None,
    proxy_concurrency: Annotated[int, typer.Option(help="Envoy worker threads", min=1,
                                                   max=64)] = 1,
) -> None:
    """Serve the listener of Gateway NAME on PORT: TLS from outside (with --tls-cert and
    --tls-key), routed by the HTTPRoutes whose parentRefs name the Gateway, to mesh services
    over mTLS with the gateway's own identity. Runs until interrupted.

    Example: tulle gateway run --name edge --port 8443 --tls-cert edge.crt --tls-key edge.key
    """
    from tulle.agent.config import AgentConfig
    from tulle.agent.locate import find_envoy

    _check_name("--name", name)
    _check_name("--namespace", namespace)
    worker = instance or f"{name}-gw"
    _check_name("--instance", worker)
    if xds_protocol not in ("delta", "sotw"):
        raise UsageError(f"--xds-protocol must be delta or sotw, not {xds_protocol!r}")
    try:
        ipaddress.ip_address(listen_address)
    except ValueError:
        raise UsageError(f"--listen-address {listen_address!r} is not an IP address",
                         hint="0.0.0.0 (every interface), or one of this host's") from None
    cert, key = _tls_files(tls_cert, tls_key)
    _check_gateway(ApiClient.from_state(ctx.obj.paths), name, namespace, port, bool(cert))
    config = AgentConfig(
        state_dir=str(ctx.obj.paths.root), service=name, name=worker, namespace=namespace,
        envoy_binary=str(find_envoy(envoy_binary)), xds_protocol=xds_protocol,
        concurrency=proxy_concurrency, gateway_port=port,
        gateway_listen_address=listen_address, gateway_tls_cert=cert, gateway_tls_key=key)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-OO", "-m", "tulle.agent", config.to_json()])


def _tls_files(cert: Path | None, key: Path | None) -> tuple[str, str]:
    """The absolute paths of the certificate and key, checked: both or neither, readable, and
    the key readable by its owner only (Envoy reads both; the key never leaves this host)."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together",
                         hint="give both for TLS from outside, or neither for plain HTTP")
    if cert is None or key is None:
        return "", ""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"{flag} {path}: not a readable file")
    text = cert.read_text(errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(f"--tls-cert {cert}: not a PEM certificate",
                         hint="the chain, leaf first, each from -----BEGIN CERTIFICATE-----")
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & 0o077:
        raise UsageError(f"--tls-key {key}: other users can read it (mode {mode:o})",
                         hint=f"chmod 600 {key}")
    return str(cert.resolve()), str(key.resolve())


def _check_gateway(client: ApiClient, name: str, namespace: str, port: int, tls: bool) -> None:
    """The Gateway exists and has a listener on ``port`` whose protocol the flags can serve."""
    protocol = "HTTPS" if tls else "HTTP"
    example = _EXAMPLE.format(name=name, namespace=namespace, listener=protocol.lower(),
                              port=port, protocol=protocol)
    try:
        found: dict[str, Any] = client.get(f"/v1/resources/gateway/{namespace}/{name}")
    except NotFoundError:
        raise UsageError(f"there is no Gateway {namespace}/{name}",
                         hint=f"apply one first, for example:\n{example}") from None
    listeners = found.get("manifest", {}).get("spec", {}).get("listeners", [])
    listener = next((item for item in listeners if item.get("port") == port), None)
    if listener is None:
        ports = ", ".join(str(item.get("port")) for item in listeners) or "none"
        raise UsageError(f"Gateway {namespace}/{name} has no listener on port {port} "
                         f"(its ports: {ports})",
                         hint="run with one of its ports, or add a listener:\n" + example)
    wanted = listener.get("protocol", "HTTP")
    if wanted == "HTTPS" and not tls:
        raise UsageError(f"listener {listener.get('name')} of Gateway {namespace}/{name} is "
                         "HTTPS: give its certificate and key",
                         hint="--tls-cert CHAIN.pem --tls-key KEY.pem (files on this host)")
    if wanted == "HTTP" and tls:
        raise UsageError(f"listener {listener.get('name')} of Gateway {namespace}/{name} is "
                         "HTTP, but --tls-cert was given",
                         hint="set the listener's protocol: HTTPS, or run without TLS files")
