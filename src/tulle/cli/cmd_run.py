"""`tulle run`: start an application with its agent and Envoy sidecar."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from tulle.errors import UsageError
from tulle.model.meta import dns_label_problem, label_problem


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                  "allow_interspersed_args": False})(run)


def run(
    ctx: typer.Context,
    service: Annotated[str, typer.Option(help="The service this workload is an instance of")],
    port: Annotated[int | None, typer.Option(
        help="Port the application serves on (omit for a pure client)", min=1,
        max=65535)] = None,
    name: Annotated[str | None, typer.Option(
        help="Instance name, unique in the namespace [default: SERVICE-xxxxx]")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    version: Annotated[str, typer.Option(help="Version label, e.g. v2")] = "",
    service_account: Annotated[str | None, typer.Option(
        help="Service account of the workload's identity [default: the service name]")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="Workload label k=v (repeatable)")
                     ] = None,
    upstream: Annotated[list[str] | None, typer.Option(
        help="SERVICE[.NAMESPACE]:LOCAL_PORT: bind a local port to a service (repeatable)")
    ] = None,
    xds_protocol: Annotated[str, typer.Option(
        help="How the sidecar talks xDS: delta or sotw")] = "delta",
    envoy_binary: Annotated[str | None, typer.Option(
        envvar="TULLE_ENVOY_BINARY", help="Use this Envoy binary instead of the bundled one")
    ] = None,
    proxy_concurrency: Annotated[int, typer.Option(help="Envoy worker threads", min=1,
                                                   max=64)] = 1,
    envoy_log_level: Annotated[str, typer.Option(help="Envoy's log level")] = "warning",
    control_plane: Annotated[str | None, typer.Option(
        help="Join a control plane on another host: https://HOST:PORT, as `tulle token "
             "create` printed there")] = None,
    join_token: Annotated[str | None, typer.Option(
        envvar="TULLE_JOIN_TOKEN", show_envvar=True,
        help="With --control-plane: the join token (prefer the environment variable or "
             "--join-token-file: a command line is visible to every user of this host)")
    ] = None,
    join_token_file: Annotated[Path | None, typer.Option(
        help="With --control-plane: a file holding the join token")] = None,
    ca_fingerprint: Annotated[str | None, typer.Option(
        help="With --control-plane: the CA's fingerprint (sha256:...), as `tulle token "
             "create` printed it")] = None,
    address: Annotated[str | None, typer.Option(
        help="With --control-plane: this host's address that other hosts reach [default: "
             "the one on the route to the control plane]")] = None,
) -> None:
    """Run COMMAND (after --) as a mesh workload; exits with COMMAND's exit code.

    Example: tulle run --service client -- curl -sf http://books/
    """
    from tulle.agent.config import JOIN_TOKEN_ENV, AgentConfig
    from tulle.agent.locate import find_envoy

    command = list(ctx.args)
    instance = name or f"{service}-{secrets.token_hex(3)[:5]}"
    _check_name("--service", service)
    _check_name("--name", instance)
    _check_name("--namespace", namespace)
    if service_account is not None:
        _check_name("--service-account", service_account)
    if xds_protocol not in ("delta", "sotw"):
        raise UsageError(f"--xds-protocol must be delta or sotw, not {xds_protocol!r}")
    if port is not None and command:
        _check_port_free(port, service)
    joining = _joining(control_plane, join_token, join_token_file, ca_fingerprint, address)
    labels = dict(_parse_label(item) for item in label or ())
    upstreams = tuple(_parse_upstream(item) for item in upstream or ())
    config = AgentConfig(
        state_dir=str(ctx.obj.paths.root), service=service, name=instance, namespace=namespace,
        envoy_binary=str(find_envoy(envoy_binary)), command=tuple(command), app_port=port,
        version=version, labels=labels, upstreams=upstreams, xds_protocol=xds_protocol,
        concurrency=proxy_concurrency, envoy_log_level=envoy_log_level,
        service_account=service_account or "", ephemeral=name is None,
        control_plane=control_plane or "", ca_fingerprint=ca_fingerprint or "",
        address=address or "",
    )
    if joining:
        os.environ[JOIN_TOKEN_ENV] = joining  # not argv: other users can read that
    # Become the agent: it should not carry the CLI's libraries in memory for its lifetime.
    # -OO: no docstrings in memory either, 1.2 MB of the agent's own (docs/performance.md).
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-OO", "-m", "tulle.agent", config.to_json()])


def _joining(control_plane: str | None, join_token: str | None, token_file: Path | None,
             fingerprint: str | None, address: str | None) -> str:
    """The join token, when joining a control plane on another host; "" otherwise. Every
    flag is checked before anything starts."""
    from tulle.agent.remote import check_fingerprint, parse_control_plane

    if control_plane is None:
        for flag, value in (("--join-token-file", token_file),
                            ("--ca-fingerprint", fingerprint), ("--address", address)):
            if value is not None:
                raise UsageError(f"{flag} is only for joining a control plane on another host",
                                 hint="add --control-plane https://HOST:PORT, or drop it")
        return ""
    parse_control_plane(control_plane)
    if fingerprint is None:
        raise UsageError("--control-plane needs --ca-fingerprint",
                         hint="copy both from `tulle token create` on the control plane's "
                              "host")
    check_fingerprint(fingerprint)
    if address is not None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"--address {address!r} is not an IP address",
                             hint="give this host's address that other hosts reach") from None
    if token_file is not None:
        try:
            join_token = token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--join-token-file {token_file}: {exc.strerror or exc}",
                             hint="give the file `tulle token create`'s token was saved "
                                  "in") from exc
    if not join_token:
        raise UsageError("--control-plane needs a join token",
                         hint="make one on the control plane's host with `tulle token create "
                              "--service NAME`, and pass it in TULLE_JOIN_TOKEN or "
                              "--join-token-file")
    return join_token


def _port_holder(port: int) -> tuple[str, bool] | None:
    """Who listens on ``port`` on loopback: a description, and whether it is the application
    of another tulle workload. None when nobody does."""
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            address = conn.laddr
            if conn.status != psutil.CONN_LISTEN or not address or address.port != port:
                continue
            if address.ip not in ("127.0.0.1", "0.0.0.0", "::", "::1"):
                continue
            if conn.pid is None:
                return "another user's process", False
            process = psutil.Process(conn.pid)
            what = f"pid {conn.pid} ({' '.join(process.cmdline())[:120]})"
            parent = process.parent()
            agent = parent is not None and "tulle.agent" in " ".join(parent.cmdline())
            return what, agent
    return None


def _check_port_free(port: int, service: str) -> None:
    """The application will listen on ``port``: if another tulle workload's application holds
    it already (a leftover from an earlier run), say so before starting anything; if another
    process does, warn (tulle may front an application that runs already)."""
    holder = _port_holder(port)
    if holder is None:
        return
    what, workload = holder
    if workload:
        raise UsageError(f"--port {port} is taken by another workload's application: {what}",
                         hint="stop that workload (Ctrl-C where it runs, or `tulle down "
                         "--all`), or give this one another --port")
    print(f"warning: port {port} is in use already by {what}; {service}'s command may fail "
          "to listen on it", file=sys.stderr)


def _check_name(flag: str, value: str) -> None:
    if (why := dns_label_problem(value)) is not None:
        raise UsageError(f"{flag}: {why}")


def _parse_label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise UsageError(f"--label {item!r}: expected KEY=VALUE")
    if (why := label_problem(key, value)) is not None:
        raise UsageError(f"--label: {why}")
    return key, value


def _parse_upstream(item: str) -> tuple[str, int]:
    target, sep, raw_port = item.rpartition(":")
    if not sep or not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise UsageError(f"--upstream {item!r}: expected SERVICE[.NAMESPACE]:LOCAL_PORT",
                         hint="for example --upstream books:9000")
    for part in target.split("."):
        if (why := dns_label_problem(part)) is not None:
            raise UsageError(f"--upstream {item!r}: {why}")
    if target.count(".") > 1:
        raise UsageError(f"--upstream {item!r}: use SERVICE or SERVICE.NAMESPACE")
    return target, int(raw_port)
