"""The floor for any Envoy-based mesh: two hand-written Envoys with static config and mTLS.

client -> client-side Envoy (plaintext listener on loopback) -> mTLS, HTTP/1.1 -> server-side
Envoy (listener requiring a client certificate) -> the application. With ``http2`` (gRPC), every
hop speaks HTTP/2: h2c from the client, h2 by ALPN inside mTLS, h2c to the application; routes
have no request timeout, so a stream lasts as long as its caller wants. The same hop tulle's
sidecars make, with nothing else: no xDS, no route tables built per service, no telemetry
beyond Envoy's built-in stats. Throwaway certificates come from ``benchmarks.tls.own_pki``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import free_port, pinned
from benchmarks.tls import Pem, own_pki
from tulle.agent.locate import find_envoy

_TYPES = "type.googleapis.com/envoy.extensions"
SERVER_ID = "spiffe://bench.local/ns/default/sa/server"  # as benchmarks.tls.own_pki makes it


@dataclass(frozen=True)
class EnvoyPair:
    port: int  # the client-side Envoy's plaintext listener
    client: subprocess.Popen[bytes]
    server: subprocess.Popen[bytes]


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _http_listener(name: str, port: int, cluster: str, http2: bool = False
                   ) -> dict[str, Any]:
    # The connection manager's default codec (AUTO) tells HTTP/2 from HTTP/1.1 by itself.
    route: dict[str, Any] = {"cluster": cluster, **({"timeout": "0s"} if http2 else {})}
    return {"name": name, "address": _address(port), "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": f"{_TYPES}.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {"virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": route}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": f"{_TYPES}.filters.http.router.v3.Router"}}],
        },
    }]}]}


def _cluster(name: str, port: int, http2: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _address(port)}}]}]}}
    if http2:
        options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        cluster["typed_extension_protocol_options"] = {options: {
            "@type": f"type.googleapis.com/{options}",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def _tls_context(identity: Pem, bundle: Path, http2: bool = False) -> dict[str, Any]:
    context: dict[str, Any] = {
        "tls_certificates": [{"certificate_chain": {"filename": str(identity.cert)},
                              "private_key": {"filename": str(identity.key)}}],
        "validation_context": {"trusted_ca": {"filename": str(bundle)}}}
    if http2:
        context["alpn_protocols"] = ["h2"]
    return context


def _admin(name: str) -> dict[str, Any]:
    """As tulle's agent does: admin on a Unix socket, bound relative to Envoy's directory."""
    return {"address": {"pipe": {"path": f"{name}-admin.sock", "mode": 0o600}}}


def bootstraps(directory: Path, app_port: int, http2: bool = False
               ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """The client-side listener's port, and both Envoys' static bootstraps."""
    bundle, server_pem, client_pem = own_pki(directory)
    listen, mtls = free_port(), free_port()
    upstream_tls = _tls_context(client_pem, bundle, http2)
    # As a mesh does: accept only the server's identity, not anything the CA signed.
    upstream_tls["validation_context"]["match_typed_subject_alt_names"] = [
        {"san_type": "URI", "matcher": {"exact": SERVER_ID}}]
    to_server = _cluster("server", mtls, http2)
    to_server["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": f"{_TYPES}.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": upstream_tls}}
    client = {"admin": _admin("client"),
              "static_resources": {"listeners": [_http_listener("client", listen, "server",
                                                                http2)],
                                   "clusters": [to_server]}}
    inbound = _http_listener("server", mtls, "app", http2)
    inbound["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_TYPES}.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _tls_context(server_pem, bundle, http2)}}
    server = {"admin": _admin("server"),
              "static_resources": {"listeners": [inbound],
                                   "clusters": [_cluster("app", app_port, http2)]}}
    return listen, client, server


def _start(directory: Path, name: str, bootstrap: dict[str, Any],
           cpus: set[int] | None) -> subprocess.Popen[bytes]:
    config = directory / f"{name}.yaml"
    config.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    # The flags tulle's agent gives its Envoy, minus those about its logs.
    return subprocess.Popen(pinned([str(find_envoy()), "-c", str(config),
                                    "--disable-hot-restart", "--concurrency", "1",
                                    "--log-level", "warning",
                                    "--log-path", str(directory / f"{name}.log")], cpus),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=directory)


@contextlib.contextmanager
def envoy_pair(directory: Path, app_port: int, cpus: set[int] | None, http2: bool = False
               ) -> Iterator[EnvoyPair]:
    listen, client_config, server_config = bootstraps(directory, app_port, http2)
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(_start(directory, "server-envoy", server_config, cpus))
        started.append(_start(directory, "client-envoy", client_config, cpus))
        yield EnvoyPair(listen, client=started[1], server=started[0])
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(10)
