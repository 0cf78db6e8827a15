"""From `tulle run` to a ready sidecar: config ACKed and the inbound listener serving.

"Serving" means an mTLS client (with a certificate from the mesh's issuer) completes a handshake
with the inbound listener and gets an HTTP answer (503: no application behind it, on purpose).

Baseline, same run: a bare Envoy with an equivalent static config (an mTLS listener requiring
client certificates), from spawn to serving the same way. The difference is what tulle adds:
the CLI, the agent, registration, key and certificate, and the first xDS push.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    TULLE,
    BenchMesh,
    Figure,
    bench_mesh,
    free_port,
    median,
    percentile,
    poll,
)
from benchmarks.tls import Pem, answers, mesh_client, own_pki
from tulle.agent.locate import find_envoy

TARGET_S = 1.0


def _bare_envoy_once(tmp: Path) -> float:
    listener = free_port()
    bundle, server, client = own_pki(tmp)
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(server.cert)},
                                      "private_key": {"filename": str(server.key)}}],
                "validation_context": {"trusted_ca": {"filename": str(bundle)}},
            },
        },
    }
    bootstrap = {
        # As tulle's agent does: admin on a Unix socket, bound relative to Envoy's directory.
        "admin": {"address": {"pipe": {"path": f"admin-{listener}.sock", "mode": 0o600}}},
        "static_resources": {"listeners": [{
            "name": "inbound",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
            "filter_chains": [{"transport_socket": tls, "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "inbound",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                        "routes": [{"match": {"prefix": "/"},
                                                                    "direct_response": {
                                                                        "status": 503}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/"
                                 "envoy.extensions.filters.http.router.v3.Router"}}],
                },
            }]}],
        }]},
    }
    config = tmp / f"bare-{listener}.json"
    config.write_text(json.dumps(bootstrap))
    started = time.monotonic()
    process = subprocess.Popen([str(find_envoy()), "-c", str(config), "--disable-hot-restart",
                                "--concurrency", "1", "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        poll(lambda: answers(listener, client), timeout=30)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait()


def _tulle_once(mesh: BenchMesh, index: int, client: Pem) -> float:
    name = f"bench-{index}"
    started = time.monotonic()
    process = mesh.spawn("--service", name, "--name", name, "--port", str(free_port()))

    def inbound_port() -> int | None:
        for w in mesh.api.get("/v1/workloads", timeout=5):
            if w["name"] == name and w["inboundPort"]:
                return int(w["inboundPort"])
        return None

    port = poll(inbound_port, timeout=30)
    poll(lambda: answers(port, client), timeout=30)
    elapsed = time.monotonic() - started
    process.send_signal(2)
    process.wait(20)
    return elapsed


def _up_once(first: bool) -> float:
    """`tulle up` until it returns (it waits for the API and xDS ports to answer); ``first``:
    a fresh state directory, so the CA's root and issuer are generated too."""
    with tempfile.TemporaryDirectory(prefix="tulle-bench-up-") as tmp:
        mesh = BenchMesh(Path(tmp))
        try:
            if not first:
                mesh.up()
                mesh.cli("down")
            started = time.perf_counter()
            mesh.up()
            elapsed = time.perf_counter() - started
            mesh.api.get("/v1/status")
            return elapsed
        finally:
            mesh.close()


def _cli_once() -> float:
    started = time.perf_counter()
    subprocess.run([*TULLE, "version"], check=True, capture_output=True)
    return time.perf_counter() - started


def run(quick: bool) -> tuple[list[Figure], str]:
    rounds = 3 if quick else 15
    cli = [_cli_once() for _ in range(rounds)]
    first_up = [_up_once(first=True) for _ in range(rounds)]
    again_up = [_up_once(first=False) for _ in range(rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        bare = [_bare_envoy_once(Path(tmp)) for _ in range(rounds)]
    with bench_mesh() as mesh, tempfile.TemporaryDirectory() as tmp:
        client = mesh_client(mesh.state, Path(tmp))
        tulle = [_tulle_once(mesh, i, client) for i in range(rounds)]
    figures = [
        Figure("tulle run -> sidecar serving, median", median(tulle), "s", median(bare),
               TARGET_S),
        Figure("tulle run -> sidecar serving, p90", percentile(tulle, 90), "s",
               percentile(bare, 90)),
        Figure("tulle up -> control plane ready, first start", median(first_up), "s",
               median(cli)),
        Figure("tulle up -> control plane ready, restart", median(again_up), "s",
               median(cli)),
    ]
    return figures, (f"{rounds} rounds; baselines: bare Envoy, static mTLS config, spawn to "
                     "serving (run); `tulle version`, the CLI's own start (up)")


def describe() -> dict[str, Any]:
    return {"name": "startup", "target": f"median <= {TARGET_S}s"}
