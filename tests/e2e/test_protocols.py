"""Protocols applications speak through the mesh: WebSocket upgrades, and HTTP/1.0 requests
(accepted unless the Mesh's spec.http.acceptHttp10 turns them off)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_prometheus import agent_url, metrics_token, scrape
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

APPS = Path(__file__).resolve().parents[1] / "apps"


def test_a_websocket_echo_works_through_the_mesh(mesh: Mesh) -> None:
    port = free_port()
    mesh.run("chat", name="chat-1", port=port,
             command=[sys.executable, str(APPS / "ws_echo.py"), str(port)])
    mesh.sync()
    result = mesh.cli("run", "--service", "client", "--", sys.executable,
                      str(APPS / "ws_client.py"), "http://chat/ws", "3", timeout=60)
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    assert json.loads(line)["answers"] == ["echo: m0", "echo: m1", "echo: m2"]


def _status_http10(mesh: Mesh) -> str:
    result = mesh.cli("run", "--service", "client", "--", "curl", "-0", "-s", "-o",
                      "/dev/null", "-w", "%{http_code}", "http://books/", check=False,
                      timeout=60)
    return result.stdout.strip()[-3:]


def test_http10_is_accepted_unless_turned_off(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.sync()
    assert _status_http10(mesh) == "200"
    mesh.cli("apply", "-f", "-", stdin="""\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  http: {acceptHttp10: false}
""")
    mesh.sync()
    assert _status_http10(mesh) == "426"  # Envoy's own answer when it is off


GRPC_SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter}
spec: {protocol: grpc}
"""


def test_grpc_calls_over_one_channel_are_balanced_per_call(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    for name in ("greeter-1", "greeter-2"):
        port = free_port()
        mesh.run("greeter", name=name, port=port,
                 command=[sys.executable, str(APPS / "grpc_greeter.py"), str(port), name])
    mesh.sync()
    local = free_port()
    result = mesh.cli("run", "--service", "client", "--upstream", f"greeter:{local}", "--",
                      sys.executable, str(APPS / "grpc_caller.py"), f"127.0.0.1:{local}",
                      "100", timeout=120)
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    calls = json.loads(line)
    assert calls["failures"] == {}, calls
    # One HTTP/2 connection from the client, yet each call is balanced on its own (round
    # robin: 50/50; anything from 30/70 shows per-call balancing, one connection would be 100/0).
    assert set(calls["answered"]) == {"greeter-1", "greeter-2"}, calls
    assert min(calls["answered"].values()) >= 30, calls


def test_grpc_by_name_through_http_proxy(mesh: Mesh) -> None:
    # grpcio honours http_proxy: it sends CONNECT greeter:50051, then speaks HTTP/2.
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    port = free_port()
    mesh.run("greeter", name="greeter-1", port=port,
             command=[sys.executable, str(APPS / "grpc_greeter.py"), str(port), "greeter-1"])
    mesh.sync()
    result = mesh.cli("run", "--service", "client", "--", sys.executable,
                      str(APPS / "grpc_caller.py"), "greeter:50051", "10", timeout=120)
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    assert json.loads(line) == {"answered": {"greeter-1": 10}, "failures": {}}


def test_tcp_by_name_through_connect_and_no_unknown_host(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin="""\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: lines}
spec: {protocol: tcp}
""")
    port = free_port()
    mesh.run("lines", name="lines-1", port=port,
             command=[sys.executable, str(APPS / "tcp_echo.py"), str(port)])
    mesh.sync()
    reached = mesh.cli("run", "--service", "client", "--", sys.executable,
                       str(APPS / "connect_line.py"), "lines:7", "hello", timeout=60)
    assert reached.stdout.splitlines()[-2:] == ["HTTP/1.1 200 OK", "lines-1:hello"], \
        reached.stdout
    # The hop between the sidecars was mutual TLS: lines-1's inbound saw a handshake.
    stats = mesh.admin("lines-1", "stats?filter=ssl.handshake")
    assert any(int(v) > 0 for k, v in (x.split(": ") for x in stats.splitlines()
                                       if "listener" in x and ": " in x)), stats

    outside = mesh.cli("run", "--service", "client", "--", sys.executable,
                       str(APPS / "connect_line.py"), "example.com:443", "x", timeout=60)
    # Outside the registry (REGISTRY_ONLY, the default): refused, the host and mode named.
    assert outside.stdout.splitlines()[0] == "HTTP/1.1 502 Bad Gateway", outside.stdout
    assert "example.com:443 is neither a mesh service nor an ExternalService" in \
        outside.stdout and "REGISTRY_ONLY" in outside.stdout


def _greeter(mesh: Mesh, name: str, *extra: str, env: tuple[str, ...] = ()) -> None:
    port = free_port()
    mesh.run("greeter", name=name, port=port, extra=extra, command=[
        "env", *env, sys.executable, str(APPS / "grpc_greeter.py"), str(port), name])


def _grpc_call(mesh: Mesh, *args: str) -> dict[str, Any]:
    """Through --upstream, where the sidecar sees each call (routes, retries, timeouts); a
    CONNECT tunnel (by name through HTTP_PROXY) carries them unseen."""
    local = free_port()
    result = mesh.cli("run", "--service", "client", "--upstream", f"greeter:{local}", "--",
                      sys.executable, str(APPS / "grpc_caller.py"), f"127.0.0.1:{local}",
                      *args, timeout=120)
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    data: dict[str, Any] = json.loads(line)
    return data


GRPC_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: greeter}
spec:
  parentRefs: [{name: greeter}]
  rules:
"""


def test_a_route_matching_one_grpc_method_sends_it_to_v2(mesh: Mesh) -> None:
    subsets = "".join(f"""---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {{name: greeter-{v}}}
spec: {{selector: {{service: greeter, version: {v}}}}}  # grpc, as greeter
""" for v in ("v1", "v2"))
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE + subsets)
    _greeter(mesh, "greeter-1", "--version", "v1")
    _greeter(mesh, "greeter-2", "--version", "v2")
    # A gRPC method is the path /package.Service/Method: an Exact path match selects it.
    mesh.cli("apply", "-f", "-", stdin=GRPC_ROUTE + """\
  - matches: [{path: {type: Exact, value: /tulle.test.Greeter/Count}}]
    backendRefs: [{name: greeter-v2}]
  - backendRefs: [{name: greeter-v1}]
""")
    mesh.sync()
    assert _grpc_call(mesh, "10") == {"answered": {"greeter-1": 10}, "failures": {}}
    assert _grpc_call(mesh, "stream", "3", "0.3") == {"received": 3, "status": "OK",
                                                      "from": ["greeter-2"]}


def test_retries_on_unavailable_hide_a_flaky_instance(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1")
    _greeter(mesh, "greeter-2", env=("FAIL_EVERY=2",))
    mesh.sync()
    without = _grpc_call(mesh, "60")
    assert sum(without["failures"].values()) > 0, without  # the flaky instance shows
    mesh.cli("apply", "-f", "-", stdin=GRPC_ROUTE + """\
  - backendRefs: [{name: greeter}]
    retry: {attempts: 3, grpcCodes: [unavailable]}
""")
    mesh.sync()
    hidden = _grpc_call(mesh, "60")
    assert hidden["failures"] == {} and sum(hidden["answered"].values()) == 60, hidden


def test_a_stream_outlives_the_timeout_meant_for_unary_calls(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1")
    # Unary calls get 1 s; the streaming method its own rule, with no request timeout.
    mesh.cli("apply", "-f", "-", stdin=GRPC_ROUTE + """\
  - name: streams
    matches: [{path: {type: PathPrefix, value: /tulle.test.Greeter/Count}}]
    backendRefs: [{name: greeter}]
    timeouts: {request: 0s}
  - name: unary
    backendRefs: [{name: greeter}]
    timeouts: {request: 1s}
""")
    mesh.sync()
    assert _grpc_call(mesh, "stream", "6", "3") == {"received": 6, "status": "OK",
                                                    "from": ["greeter-1"]}
    # The same stream under the unary rule's 1 s is cut by it: the rule is what decides.
    mesh.cli("apply", "-f", "-", stdin=GRPC_ROUTE + """\
  - backendRefs: [{name: greeter}]
    timeouts: {request: 1s}
""")
    mesh.sync()
    cut = _grpc_call(mesh, "stream", "6", "3")
    assert cut["received"] < 6 and cut["status"] != "OK", cut


def test_an_undeclared_protocol_follows_the_callers_http_version(mesh: Mesh) -> None:
    # No Service resource: a gRPC client's h2c reaches the h2c-only server as HTTP/2.
    _greeter(mesh, "greeter-1")
    mesh.sync()
    assert _grpc_call(mesh, "5") == {"answered": {"greeter-1": 5}, "failures": {}}
    described = json.loads(mesh.cli("describe", "service", "greeter", "-o", "json").stdout)
    assert (described["protocol"], described["protocolSource"]) == ("http", "detected")
    assert "detected" in mesh.cli("describe", "service", "greeter").stdout


def test_a_grpc_failure_inside_http_200_counts_as_a_failure(mesh: Mesh,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1", env=("FAIL_EVERY=2",))
    mesh.sync()
    calls = _grpc_call(mesh, "20")  # every second call: UNAVAILABLE, in an HTTP 200
    assert sum(calls["failures"].values()) == 10, calls

    def row() -> dict[str, Any] | None:
        rows = mesh.api.get("/v1/telemetry/services", {"name": "greeter"})["services"]
        return rows[0] if rows and rows[0]["requests"] >= 20 else None

    wait_for("greeter's calls in telemetry", row)
    stat = json.loads(mesh.cli("stat", "services", "greeter", "-o", "json").stdout)
    [line] = [r for r in stat["services"] if r["name"] == "greeter"]
    assert line["successRate"] == 0.5, line
    # The instance's own Prometheus metrics say the same: 10 of its 20 answers were 5xx.
    metrics = scrape(agent_url(mesh, "greeter-1"), metrics_token(mesh))
    inbound_5xx = [line for line in metrics.splitlines()
                   if line.startswith("tulle_requests_total{") and 'code_class="5xx"' in line
                   and 'direction="inbound"' in line]
    assert [line.rsplit(" ", 1)[1] for line in inbound_5xx] == ["10"], metrics[:3000]
