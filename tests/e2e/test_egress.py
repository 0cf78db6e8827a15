"""Egress through real sidecars: REGISTRY_ONLY refuses a host outside the mesh with a 502 that
names it, and an ExternalService lets it through (plain, with TLS originated by the sidecar,
or the application's own TLS through CONNECT); ALLOW_ANY passes any host, over CONNECT too,
while a mesh service's own 404 stays its own."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
import yaml

from tests.e2e.test_prometheus import agent_url, metrics_token, scrape
from tests.support import promtext
from tests.support.mesh import Mesh, wait_for
from tests.support.outside import outside_server, server_cert, via_connect, via_proxy
from tests.support.tap import Tap
from tests.support.whatif import status, what_if

pytestmark = pytest.mark.envoy


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def external(name: str, host: str, ports: list[dict[str, object]], **spec: object) -> str:
    return yaml.safe_dump({
        "apiVersion": "tulle.io/v1alpha1", "kind": "ExternalService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"host": host, "ports": ports, "address": "127.0.0.1", **spec}})


def outbound_mode(mode: str) -> str:
    return yaml.safe_dump({"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh",
                           "metadata": {"name": "default"},
                           "spec": {"outbound": {"mode": mode}}})


def client(mesh: Mesh) -> int:
    """A workload's outbound port: where its application's HTTP_PROXY points."""
    mesh.run("web", name="web-1")
    mesh.run("books", name="books-1")
    return int(mesh.workload("web-1")["outboundPort"])


def finding(mesh: Mesh, code: str) -> dict[str, Any]:
    """Wait for ``code`` in `tulle diagnose` (telemetry arrives every 0.5 s)."""
    def found() -> dict[str, Any] | None:
        result = mesh.cli("diagnose", "-o", "json", check=False)
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        assert not report["ruleErrors"], report["ruleErrors"]
        return next((f for f in report["findings"] if f["code"] == code), None)
    return wait_for(f"{code} in tulle diagnose", found)


def apply(mesh: Mesh, text: str) -> None:
    mesh.cli("apply", "-f", "-", stdin=text)
    mesh.sync()


def test_registry_only_refuses_an_unknown_host_until_an_external_service_names_it(
        mesh: Mesh) -> None:
    proxy = client(mesh)
    with outside_server() as outside:
        host = "api.outside.example"
        refused = via_proxy(proxy, f"{host}:{outside.port}", "/orders")
        assert refused.status == 502, refused
        assert f"tulle: {host}:{outside.port} is neither a mesh service nor an " \
            "ExternalService" in refused.body, refused.body
        assert "REGISTRY_ONLY" in refused.body and "ALLOW_ANY" in refused.body
        with pytest.raises(OSError, match="502"):
            via_connect(proxy, host, outside.port)
        assert via_proxy(proxy, "bookz", "/").status == 502  # a typo of a mesh service
        assert outside.seen == []  # nothing left the mesh
        told = what_if(mesh, "web", f"http://{host}:{outside.port}/orders")
        assert status(told) == 502 and "REGISTRY_ONLY" in json.dumps(told["steps"]), told

        # diagnose names the caller, the hosts as the application named them, and the fix.
        found = finding(mesh, "TUL1030")
        assert found["subject"] == "proxy/web-1.default", found
        evidence = "\n".join(found["evidence"])
        assert f"{host}:{outside.port} (2)" in evidence, evidence
        assert "bookz looks like the mesh service books" in evidence, evidence
        assert "ExternalService" in found["fix"] and "call books instead of bookz" in \
            found["fix"], found
        edges = json.loads(mesh.cli("edges", "-o", "json").stdout)["edges"]
        assert any(e["destination"].get("refused") and e["destination"]["host"] ==
                   f"{host}:{outside.port}" and e["requests"] == 2 for e in edges), edges

        apply(mesh, external("orders-api", host, [{"port": outside.port,
                                                    "protocol": "http"}]))
        reply = via_proxy(proxy, f"{host}:{outside.port}", "/orders")
        assert reply.status == 200, reply
        assert status(what_if(mesh, "web", f"http://{host}:{outside.port}/orders")) == 200
        assert reply.body["path"] == "/orders"
        assert reply.body["host"] == f"{host}:{outside.port}"  # as the application named it
        assert reply.body["tls"] is False
        # A CONNECT to the declared port tunnels; another port is refused, with the ports.
        assert via_connect(proxy, host, outside.port, "/x").body["path"] == "/x"
        with pytest.raises(OSError, match="502"):
            via_connect(proxy, host, outside.port + 1)
        # Another host is still refused.
        assert via_proxy(proxy, "other.outside.example").status == 502


def test_tls_origination_verifies_the_host_against_the_bundle(mesh: Mesh) -> None:
    proxy = client(mesh)
    host = "secure.outside.example"
    cert = server_cert(host)
    with outside_server(cert) as outside:
        apply(mesh, external("secure", host, [{"port": outside.port, "protocol": "http"}],
                             tls={"caBundle": cert.ca_pem}))
        reply = via_proxy(proxy, host, "/pay")
        assert reply.status == 200, reply
        assert reply.body["tls"] is True and reply.body["path"] == "/pay"
        # A bundle from another CA: the sidecar refuses the host's certificate.
        apply(mesh, external("secure", host, [{"port": outside.port, "protocol": "http"}],
                             tls={"caBundle": server_cert(host).ca_pem}))
        assert via_proxy(proxy, host, "/pay").status == 503
        assert len(outside.seen) == 1


def test_the_applications_own_tls_through_connect_to_a_tls_port(mesh: Mesh) -> None:
    proxy = client(mesh)
    host = "bank.outside.example"
    cert = server_cert(host)
    with outside_server(cert) as outside:
        apply(mesh, external("bank", host, [{"port": outside.port, "protocol": "tls"}]))
        reply = via_connect(proxy, host, outside.port, "/balance", ca_pem=cert.ca_pem)
        assert reply.status == 200 and reply.body["tls"] is True, reply
        # Without an http port, a plain request says how to reach it.
        plain = via_proxy(proxy, host)
        assert plain.status == 400 and f"CONNECT {host}:PORT" in plain.body, plain


def test_allow_any_passes_any_host_and_keeps_mesh_404s(mesh: Mesh) -> None:
    proxy = client(mesh)
    apply(mesh, yaml.safe_dump({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "books-api", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "books"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                            "backendRefs": [{"name": "books"}]}]}}))
    cert = server_cert("localhost")
    with outside_server() as plain, outside_server(cert) as secure:
        assert via_proxy(proxy, f"localhost:{plain.port}").status == 502
        apply(mesh, outbound_mode("ALLOW_ANY"))
        reply = via_proxy(proxy, f"localhost:{plain.port}", "/free")
        assert reply.status == 200 and reply.body["path"] == "/free", reply
        # The host the application named reaches the server; tulle's own header does not.
        assert reply.body["host"] == f"localhost:{plain.port}", reply.body
        assert reply.body["egress_header"] is None
        tunnelled = via_connect(proxy, "localhost", secure.port, "/s", ca_pem=cert.ca_pem)
        assert tunnelled.status == 200 and tunnelled.body["tls"] is True, tunnelled
        # Mesh services are still the mesh's: routed, and a path no rule matches is a 404
        # from the caller's sidecar, not a call out of the mesh.
        assert via_proxy(proxy, "books", "/api/1").body["workload"] == "books-1"
        assert via_proxy(proxy, "books", "/other").status == 404
        assert len(plain.seen) == 1


def test_calls_out_of_the_mesh_have_metrics_and_access_logs_per_host(mesh: Mesh) -> None:
    proxy = client(mesh)
    host = "api.outside.example"
    with outside_server() as outside:
        apply(mesh, external("orders-api", host, [{"port": outside.port, "protocol": "http"}]))
        tap = Tap.start(mesh, "workload/web-1")
        try:
            assert [via_proxy(proxy, host, f"/o/{i}").status for i in range(3)] == [200] * 3
            events = tap.wait("three egress requests", count=3, authority=host)
        finally:
            tap.stop()
        cluster = f"external|{host}|{outside.port}"
        assert {a.event["upstreamCluster"] for a in events} == {cluster}
        assert sorted(a.event["path"] for a in events) == ["/o/0", "/o/1", "/o/2"]

        def edge() -> dict[str, Any] | None:
            edges = json.loads(mesh.cli("edges", "-o", "json").stdout)["edges"]
            return next((e for e in edges if e["destination"].get("host") == host
                         and e["requests"] >= 3), None)
        found = wait_for("the egress edge in tulle edges", edge)
        assert found["source"]["workload"] == "web-1" and found["mtls"] is False
        assert found["destination"]["port"] == outside.port
        table = mesh.cli("edges").stdout
        assert f"{host}:{outside.port} (external)" in table, table

        samples = promtext.parse(scrape(agent_url(mesh, "web-1"), metrics_token(mesh)))
        assert promtext.value(samples, "tulle_requests_total", direction="egress",
                              dst_host=host, dst_port=str(outside.port),
                              code_class="2xx") == 3


def authz(name: str, action: str, *rules: dict[str, object]) -> str:
    return yaml.safe_dump({
        "apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"targetRef": {"kind": "ExternalService", "name": "orders-api"},
                 "action": action, "rules": list(rules)}})


def test_authorization_policies_limit_who_reaches_an_external_service(mesh: Mesh) -> None:
    web = client(mesh)
    mesh.run("ops", name="ops-1", namespace="ops")
    ops = int(mesh.workload("ops-1")["outboundPort"])
    host = "api.outside.example"
    with outside_server() as outside:
        apply(mesh, external("orders-api", host, [{"port": outside.port, "protocol": "http"}]))
        apply(mesh, authz("only-web", "ALLOW", {"from": [{"service": "web"}]}))
        assert via_proxy(web, host, "/web").status == 200
        denied = via_proxy(ops, host, "/ops")
        assert denied.status == 403, denied
        assert "no-ALLOW-rule-matched:default/only-web" in denied.body, denied.body
        told = what_if(mesh, "ops", f"http://{host}/ops", namespace="ops")
        assert told["outcome"] == ("403 from the caller's sidecar: "
                                   "no-ALLOW-rule-matched:default/only-web"), told
        assert status(what_if(mesh, "web", f"http://{host}/web")) == 200
        with pytest.raises(OSError, match="403"):
            via_connect(ops, host, outside.port)
        # Whatever follows the host's ":" picks the same route table: the policy holds there
        # too (a port that is not a number must not slip past it).
        for authority in (f"{host}:{outside.port}", f"{host}:x", f"{host}:"):
            assert via_proxy(ops, authority, "/ops").status in (400, 403), authority
        assert [seen["path"] for seen in outside.seen] == ["/web"]
        # The denials are counted in the caller's sidecar, per RBAC policy: `tulle stat` and
        # `tulle diagnose` name the host, the policy and the caller.
        denials = {k: v for k, v in mesh.stats("ops-1", namespace="ops").items()
                   if "policy" in k and k.startswith("http.outbound.")}
        assert any(k.endswith("no-ALLOW-rule-matched:default/only-web.denied") and v >= 2
                   for k, v in denials.items()), denials

        def egress_denials() -> list[dict[str, Any]] | None:
            data = json.loads(mesh.cli("stat", "-o", "json").stdout)
            rows = data["egressAuthorization"]
            return rows if rows and rows[0]["denied"] >= 2 else None
        [row] = wait_for("the egress denials in tulle stat", egress_denials)
        assert (row["host"], row["policy"], row["callers"]) == (
            host, "no-ALLOW-rule-matched:default/only-web", ["ops-1.ops"]), row
        assert "EXTERNAL HOST" in mesh.cli("stat").stdout
        found = finding(mesh, "TUL1028")
        assert f"the ExternalService {host}" in found["cause"], found
        assert found["subject"] == "authorizationpolicy/only-web.default", found
        assert any("ops-1.ops" in line for line in found["evidence"]), found

        # A DENY on one method from one namespace: the rest passes.
        mesh.cli("delete", "authorizationpolicy", "only-web")
        apply(mesh, authz("no-ops-posts", "DENY", {"name": "posts",
                                                    "from": [{"namespace": "ops"}],
                                                    "to": [{"methods": ["POST"]}]}))
        assert via_proxy(ops, host, "/ops").status == 200
        connection = http.client.HTTPConnection("127.0.0.1", ops, timeout=10)
        connection.request("POST", f"http://{host}/ops", body=b"x", headers={"Host": host})
        response = connection.getresponse()
        assert response.status == 403
        assert "AuthorizationPolicy:default/no-ops-posts:posts" in response.read().decode()
        connection.close()
        for method, code in (("POST", 403), ("GET", 200)):
            told = what_if(mesh, "ops", f"http://{host}/ops", method, namespace="ops")
            assert status(told) == code, told


def test_a_dry_run_on_an_external_service_denies_nothing_and_counts_per_caller(
        mesh: Mesh) -> None:
    client(mesh)
    mesh.run("ops", name="ops-1", namespace="ops")
    ops = int(mesh.workload("ops-1")["outboundPort"])
    host = "api.outside.example"
    with outside_server() as outside:
        apply(mesh, external("orders-api", host, [{"port": outside.port, "protocol": "http"}]))
        trial = yaml.safe_load(authz("no-ops", "DENY", {"name": "ops",
                                                         "from": [{"namespace": "ops"}]}))
        trial["spec"]["mode"] = "DryRun"
        apply(mesh, yaml.safe_dump(trial))
        mesh.wait_quiescent("ops-1", namespace="ops")
        tap = Tap.start(mesh, "workload/ops-1", "-n", "ops")
        assert [via_proxy(ops, host, "/ops").status for _ in range(3)] == [200] * 3
        # The caller's own sidecar marks what the dry run would deny...
        tap.wait("the calls in tap", count=3, direction="outbound")
        tap.stop()
        assert {e["wouldDeny"] for e in tap.events(direction="outbound")} == {
            "AuthorizationPolicy:default/no-ops:ops"}
        # ...counts it, and `tulle stat` and diagnose show it per host, policy and caller.

        def counted() -> list[dict[str, Any]] | None:
            rows = json.loads(mesh.cli("stat", "-o", "json").stdout)["egressAuthorization"]
            return rows if rows and rows[0]["wouldDeny"] == 3 else None
        [row] = wait_for("the dry run's counts in tulle stat", counted)
        assert (row["host"], row["denied"], row["callers"]) == (host, 0, ["ops-1.ops"]), row
        found = finding(mesh, "TUL1029")
        assert f"the ExternalService {host}" in found["cause"], found
        assert found["subject"] == "authorizationpolicy/no-ops.default", found
        # Promoted, the same calls are denied.
        mesh.cli("policy", "promote", "no-ops")
        mesh.sync()
        mesh.wait_quiescent("ops-1", namespace="ops")
        assert [via_proxy(ops, host, "/ops").status for _ in range(3)] == [403] * 3
        assert len(outside.seen) == 3
