"""From `tulle run` to a ready sidecar: config ACKed and the inbound listener serving.

Baseline, same run: a bare Envoy with an equivalent static config, from spawn to serving.
The difference is what tulle adds: the CLI, the agent, registration and the first xDS push.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchMesh, Figure, bench_mesh, free_port, median, percentile, poll
from tulle.agent.locate import find_envoy

TARGET_S = 1.0


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # Envoy answered (503: no application behind it, as intended)
    except OSError:
        return False


def _bare_envoy_once(tmp: Path) -> float:
    listener, admin = free_port(), free_port()
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "inbound",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
            "filter_chains": [{"filters": [{
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
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(lambda: _answers(listener), timeout=30)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait()


def _tulle_once(mesh: BenchMesh, index: int) -> float:
    name = f"bench-{index}"
    started = time.monotonic()
    process = mesh.spawn("--service", name, "--name", name, "--port", str(free_port()))

    def inbound_port() -> int | None:
        for w in mesh.api.get("/v1/workloads", timeout=5):
            if w["name"] == name and w["inboundPort"]:
                return int(w["inboundPort"])
        return None

    port = poll(inbound_port, timeout=30)
    poll(lambda: _answers(port), timeout=30)
    elapsed = time.monotonic() - started
    process.send_signal(2)
    process.wait(20)
    return elapsed


def run(quick: bool) -> tuple[list[Figure], str]:
    rounds = 3 if quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        bare = [_bare_envoy_once(Path(tmp)) for _ in range(rounds)]
    with bench_mesh() as mesh:
        tulle = [_tulle_once(mesh, i) for i in range(rounds)]
    figures = [
        Figure("tulle run -> sidecar serving, median", median(tulle), "s", median(bare),
               TARGET_S),
        Figure("tulle run -> sidecar serving, p90", percentile(tulle, 90), "s",
               percentile(bare, 90)),
    ]
    return figures, f"{rounds} rounds; baseline: bare Envoy, static config, spawn to serving"


def describe() -> dict[str, Any]:
    return {"name": "startup", "target": f"median <= {TARGET_S}s"}
