"""AuthorizationPolicy through real sidecars: each caller and request match, on both sides of
every rule, for ALLOW and DENY; default deny; a tcp service; the 403 that names the policy."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_prometheus import agent_url, metrics_token, scrape
from tests.support import promtext
from tests.support.http import Reply, request
from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.ports import free_port
from tests.support.tap import Tap
from tests.support.whatif import status as told_status
from tests.support.whatif import what_if

pytestmark = pytest.mark.envoy

APPS = Path(__file__).resolve().parents[1] / "apps"
TD = "tulle.local"


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def authorization_of(mesh: Mesh, service: str) -> dict[str, Any]:
    stat = json.loads(mesh.cli("stat", "services", service, "-o", "json").stdout)
    [row] = [r for r in stat["services"] if r["name"] == service]
    return dict(row["authorization"])


def policy(name: str, spec: dict[str, object], namespace: str = "default") -> str:
    return yaml.safe_dump({"apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def on(service: str, action: str, *rules: dict[str, object]) -> dict[str, object]:
    return {"targetRef": {"kind": "Service", "name": service}, "action": action,
            "rules": list(rules)}


def finding(mesh: Mesh, code: str, *args: str) -> dict[str, Any]:
    """Wait for ``code`` in `tulle diagnose` (telemetry arrives every 0.5 s)."""
    def found() -> dict[str, Any] | None:
        result = mesh.cli("diagnose", *args, "-o", "json", check=False)
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        assert not report["ruleErrors"], report["ruleErrors"]
        return next((f for f in report["findings"] if f["code"] == code), None)
    return wait_for(f"{code} in tulle diagnose", found)


def enforce(mesh: Mesh, text: str, *sidecars: str, delete: tuple[str, ...] = ()) -> None:
    """Apply (or delete) policies and wait until the callees' sidecars serve every new
    connection with the new listener."""
    for name in delete:
        mesh.cli("delete", "authorizationpolicy", name)
    if text:
        mesh.cli("apply", "-f", "-", stdin=text)
    mesh.sync()
    mesh.wait_quiescent(*sidecars)


def denied_by(reply: Reply) -> str:
    """The RBAC policy ID a 403's body names."""
    assert reply.status == 403, reply
    body = str(reply.body)
    assert body.startswith("access denied (tulle authorization): "), body
    return body.split("rbac_access_denied_matched_policy[", 1)[1].split("]", 1)[0]


@pytest.fixture
def callers(mesh: Mesh) -> tuple[int, int, Workload]:
    """books-1; web-1 (default) and ops-1 (namespace ops), whose --upstream ports (returned)
    lead to books."""
    books = mesh.run("books", name="books-1")
    web, ops = free_port(), free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{web}"))
    mesh.run("ops", name="ops-1", namespace="ops", extra=("--upstream", f"books.default:{ops}"))
    mesh.sync()
    assert request(web, "/").status == 200 and request(ops, "/").status == 200
    return web, ops, books


def test_callers_by_namespace_service_and_identity_allow_and_deny(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, ops, _ = callers
    enforce(mesh, policy("no-ops", on("books", "DENY", {"name": "ops",
                                                        "from": [{"namespace": "ops"}]})),
            "books-1")
    assert denied_by(request(ops, "/")) == "AuthorizationPolicy:default/no-ops:ops"
    assert what_if(mesh, "ops/ops-1", "http://books.default/", namespace="ops")[
        "outcome"] == "403 from the callee's sidecar: AuthorizationPolicy:default/no-ops:ops"
    assert told_status(what_if(mesh, "web", "http://books/")) == 200
    assert request(web, "/").status == 200
    # diagnose names the policy, the rule, the caller's identity, and the change.
    found = finding(mesh, "TUL1028", "books")
    assert found["subject"] == "authorizationpolicy/no-ops.default", found
    evidence = "\n".join(found["evidence"])
    assert "rule ops of AuthorizationPolicy default/no-ops (DENY): denied 1 requests" in evidence
    # (one request before the policy, one after)
    assert f"ops-1.ops (spiffe://{TD}/ns/ops/sa/ops) -> books.default: 1 of 2 requests got " \
        "403" in evidence, evidence
    assert "AuthorizationPolicy default/no-ops created" in evidence, evidence
    assert found["severity"] == "error" and "tulle rollback --revert" in found["fix"], found
    # The application saw neither denied request: Envoy answered.
    enforce(mesh, policy("web-only", on("books", "ALLOW", {"from": [{"service": "web"}]})),
            "books-1", delete=("no-ops",))
    assert request(web, "/").status == 200
    assert denied_by(request(ops, "/")) == "no-ALLOW-rule-matched:default/web-only"
    described = mesh.cli("describe", "service", "books").stdout
    assert "any other call: DENY (from AuthorizationPolicy default/web-only)" in described
    assert json.loads(mesh.cli("describe", "service", "books", "-o", "json").stdout)[
        "authorization"]["rules"] == [
        {"action": "ALLOW", "from": "AuthorizationPolicy default/web-only", "rule": "0"}]
    ops_id = f"spiffe://{TD}/ns/ops/sa/ops"
    enforce(mesh, policy("web-only", on("books", "ALLOW", {"from": [{"identity": ops_id}]})),
            "books-1")
    assert request(ops, "/").status == 200
    assert denied_by(request(web, "/")) == "no-ALLOW-rule-matched:default/web-only"


def test_default_deny_blocks_a_new_service_until_an_allow_names_it(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, ops, _ = callers
    closed = policy("closed", {"targetRef": {"kind": "Mesh"}, "defaultAction": "DENY"},
                    namespace="tulle-system")
    enforce(mesh, closed, "books-1")
    assert denied_by(request(web, "/")) == "default-deny:tulle-system/closed"
    assert denied_by(request(ops, "/")) == "default-deny:tulle-system/closed"
    # A service that starts now is closed from its first request.
    authors = free_port()
    mesh.run("authors", name="authors-1")
    mesh.run("shelf", name="shelf-1", extra=("--upstream", f"authors:{authors}"))
    mesh.sync()
    assert denied_by(request(authors, "/")) == "default-deny:tulle-system/closed"
    enforce(mesh, policy("shelf-to-authors", on("authors", "ALLOW",
                                                {"from": [{"service": "shelf"}]})), "authors-1")
    assert request(authors, "/").status == 200
    assert denied_by(request(web, "/")) == "default-deny:tulle-system/closed"  # books: closed
    # A namespace's own default overrides the mesh's.
    enforce(mesh, policy("open", {"targetRef": {"kind": "Namespace"}, "defaultAction": "ALLOW"}),
            "books-1")
    assert request(web, "/").status == 200 and request(ops, "/").status == 200


# (path, method, headers) -> expected status, with every rule of DENY_RULES in force.
DENY_CASES = [
    (("/admin", "GET", {}), 403), (("/admin/x", "GET", {}), 200), (("/adminx", "GET", {}), 200),
    (("/private", "GET", {}), 403), (("/private/a/b", "GET", {}), 403),
    (("/privatex", "GET", {}), 200), (("/v2/secret", "GET", {}), 403),
    (("/v2/public", "GET", {}), 200), (("/vx/secret", "GET", {}), 200),
    (("/form", "POST", {}), 403), (("/form", "GET", {}), 200),
    (("/debug", "GET", {"x-debug": "1"}), 403), (("/debug", "GET", {"x-debug": "2"}), 200),
    (("/debug", "GET", {}), 200),
    (("/admin?q=1", "GET", {}), 403),  # the query is not part of the path
]


def test_each_request_match_denies_its_side_of_the_rule_only(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, _, books = callers
    assert books.app_port is not None
    rules = [
        {"name": "exact", "to": [{"paths": [{"type": "Exact", "value": "/admin"}]}]},
        {"name": "prefix", "to": [{"paths": [{"type": "PathPrefix", "value": "/private/"}]}]},
        {"name": "regex", "to": [{"paths": [{"type": "RegularExpression",
                                             "value": "/v[0-9]+/secret"}]}]},
        {"name": "method", "to": [{"methods": ["POST"]}]},
        {"name": "header", "to": [{"headers": [{"name": "X-Debug", "value": "1"}]}]},
        # On another port than books': never matches books-1.
        {"name": "other-port", "to": [{"ports": [books.app_port + 1]}]},
    ]
    enforce(mesh, policy("guard", on("books", "DENY", *rules)), "books-1")
    got = [(case, request(web, case[0], method=case[1], headers=case[2])) for case, _ in DENY_CASES]
    assert [r.status for _, r in got] == [status for _, status in DENY_CASES], \
        [(case, r.status) for case, r in got]
    # `tulle what-if` tells each outcome, and the rule, without sending the request.
    for (path, method, headers), reply in got:
        told = what_if(mesh, "web", f"http://books{path}", method,
                       headers=tuple(f"{k}:{v}" for k, v in headers.items()))
        assert told_status(told) == reply.status, (path, method, headers, told)
        if reply.status == 403:
            assert told["outcome"].endswith(denied_by(reply)), (told, reply)
    assert denied_by(got[0][1]) == "AuthorizationPolicy:default/guard:exact"
    assert denied_by(got[9][1]) == "AuthorizationPolicy:default/guard:method"
    # The same port rule on books' own port denies everything.
    enforce(mesh, policy("guard", on("books", "DENY", {"name": "port",
                                                        "to": [{"ports": [books.app_port]}]})),
            "books-1")
    assert denied_by(request(web, "/")) == "AuthorizationPolicy:default/guard:port"


def test_an_allow_on_requests_lets_through_what_it_matches_only(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, ops, _ = callers
    enforce(mesh, policy("readers", on("books", "ALLOW", {
        "from": [{"service": "web"}],
        "to": [{"paths": [{"type": "PathPrefix", "value": "/public"}], "methods": ["GET"]}]})),
        "books-1")
    assert request(web, "/public/1").status == 200
    assert request(web, "/public/1", method="POST").status == 403  # method: not allowed
    assert request(web, "/other").status == 403  # path: not allowed
    assert request(ops, "/public/1").status == 403  # caller: not allowed


def test_the_mesh_can_keep_the_policy_name_out_of_the_403(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, _, _ = callers
    quiet = yaml.safe_dump({"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh",
                            "metadata": {"name": "default"},
                            "spec": {"authorization": {"revealPolicy": False}}})
    enforce(mesh, quiet + "---\n" + policy("no-web", on("books", "DENY",
                                                        {"from": [{"service": "web"}]})),
            "books-1")
    reply = request(web, "/")
    assert (reply.status, reply.body) == (403, "access denied\n")
    # Envoy still counts it under the policy's name.
    stats = mesh.stats("books-1")
    assert stats["http.inbound.rbac.denied"] == 1, sorted(s for s in stats if "rbac" in s)
    [per_policy] = [s for s in stats if s.startswith("http.inbound.rbac.policy.")]
    assert per_policy == "http.inbound.rbac.policy.AuthorizationPolicy:default/no-web:0.denied"
    assert stats[per_policy] == 1
    # ...and its metrics, by the same name (promtool checks the text).
    policy_id = "AuthorizationPolicy:default/no-web:0"

    def denied_metric() -> float | None:
        text = scrape(agent_url(mesh, "books-1"), metrics_token(mesh))
        promtext.check_metrics(text, "books-1's metrics")
        samples = promtext.parse(text)
        if not any(name == "tulle_authorization_denied_total" for name, _ in samples):
            return None  # not reported yet
        return promtext.value(samples, "tulle_authorization_denied_total",
                              workload="books-1", policy=policy_id)
    assert wait_for("the denial in books-1's metrics", denied_metric) == 1


TCP_SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: lines}
spec: {protocol: tcp}
"""


def _line(port: int, text: str) -> str:
    """Send one line to a tcp upstream port; the answer, or "" when the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(text.encode() + b"\n")
        try:
            return connection.recv(1024).decode().strip()
        except ConnectionResetError:
            return ""


def test_a_tcp_service_closes_connections_from_denied_callers(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=TCP_SERVICE)
    app = free_port()
    mesh.run("lines", name="lines-1", port=app,
             command=[sys.executable, str(APPS / "tcp_echo.py"), str(app)])
    web, ops = free_port(), free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"lines:{web}"))
    mesh.run("ops", name="ops-1", namespace="ops", extra=("--upstream", f"lines.default:{ops}"))
    mesh.sync()
    wait_for("lines to answer through web-1", lambda: _line(web, "hi") == "lines-1:hi")
    # A rule on paths cannot be judged on a connection: the DENY holds for the whole caller.
    enforce(mesh, policy("lines-guard", on("lines", "DENY", {
        "from": [{"namespace": "ops"}], "to": [{"methods": ["GET"]}]})), "lines-1")
    assert _line(ops, "hi") == ""
    assert _line(web, "hi") == "lines-1:hi"
    stats = mesh.stats("lines-1")
    assert stats.get("inbound.rbac.denied", 0) >= 1, sorted(s for s in stats if "rbac" in s)


def test_a_dry_run_changes_no_response_and_counts_what_enforcement_then_denies(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, ops, _ = callers
    trial = on("books", "DENY", {"name": "writes", "to": [{"methods": ["POST"]}]},
               {"name": "ops", "from": [{"namespace": "ops"}]})
    tap = Tap.start(mesh, "books")
    enforce(mesh, policy("lockdown", trial | {"mode": "DryRun"}), "books-1")
    assert "in dry run (enforced nowhere): DENY AuthorizationPolicy default/lockdown rule " \
        "writes" in mesh.cli("describe", "service", "books").stdout
    calls = [(web, "GET"), (web, "POST"), (ops, "GET"), (web, "GET"), (ops, "POST")]
    assert [request(port, "/", method=method).status for port, method in calls] == [200] * 5
    # tap marks each request the dry run would deny, on the side that decides.
    tap.wait("the dry run's requests in tap", count=5, direction="inbound")
    tap.stop()
    marks = [(e["method"], e["source"], e["wouldDeny"]) for e in tap.events(direction="inbound")]
    assert marks == [
        ("GET", f"spiffe://{TD}/ns/default/sa/web", None),
        ("POST", f"spiffe://{TD}/ns/default/sa/web", "AuthorizationPolicy:default/lockdown:writes"),
        ("GET", f"spiffe://{TD}/ns/ops/sa/ops", "AuthorizationPolicy:default/lockdown:ops"),
        ("GET", f"spiffe://{TD}/ns/default/sa/web", None),
        ("POST", f"spiffe://{TD}/ns/ops/sa/ops", "AuthorizationPolicy:default/lockdown:ops"),
    ], marks
    stats = mesh.stats("books-1")
    shadow = {s: v for s, v in stats.items() if "rbac" in s and "shadow" in s}
    assert stats["http.inbound.rbac.dry_run_.shadow_denied"] == 3, shadow  # POST, ops, ops
    # Per rule: what each would deny.
    rule = "http.inbound.rbac.dry_run_.policy.AuthorizationPolicy:default/lockdown:{}.shadow_denied"
    assert (shadow[rule.format("writes")], shadow[rule.format("ops")]) == (1, 2), shadow
    assert stats.get("http.inbound.rbac.denied", 0) == 0
    would = finding(mesh, "TUL1029", "books")
    assert would["subject"] == "authorizationpolicy/lockdown.default", would
    assert "Promoting default/lockdown would deny" in would["cause"], would
    # `tulle stat` shows the same counts, per rule.
    seen = wait_for("the dry run's counts in telemetry",
                    lambda: (a := authorization_of(mesh, "books"))["wouldDeny"] == 3 and a)
    assert {p["policy"]: p["wouldDeny"] for p in seen["policies"]} == {
        "AuthorizationPolicy:default/lockdown:ops": 2,
        "AuthorizationPolicy:default/lockdown:writes": 1}, seen
    assert "AuthorizationPolicy:default/lockdown:ops" in mesh.cli("stat").stdout
    history = mesh.cli("history").stdout
    mesh.cli("policy", "promote", "lockdown")
    promotion = mesh.cli("history").stdout.replace(history, "")
    assert "-  mode: DryRun" in promotion and "+  mode: Enforce" in promotion, promotion
    mesh.sync()
    mesh.wait_quiescent("books-1")
    assert [request(port, "/", method=method).status for port, method in calls] == \
        [200, 403, 403, 200, 403]
    assert mesh.stats("books-1")["http.inbound.rbac.denied"] == 3
    wait_for("the denials in telemetry", lambda: authorization_of(mesh, "books")["denied"] == 3)
    again = mesh.cli("policy", "promote", "lockdown", check=False)
    assert again.returncode != 0 and "enforced already" in again.stderr


PERMISSIVE_BOOKS = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec:
  mtls: {mode: PERMISSIVE}
"""


def test_plaintext_callers_have_no_identity_for_a_rule_to_match(
        mesh: Mesh, callers: tuple[int, int, Workload]) -> None:
    web, ops, _ = callers
    enforce(mesh, PERMISSIVE_BOOKS, "books-1")
    inbound = int(mesh.workload("books-1")["inboundPort"])
    assert request(inbound, "/").status == 200  # plaintext, straight to the sidecar
    # Allowing every workload of the namespace still refuses a caller with no certificate;
    # headers that claim an identity change nothing.
    enforce(mesh, policy("mesh-only", on("books", "ALLOW", {"from": [{"namespace": "default"}]})),
            "books-1")
    forged = {"x-forwarded-client-cert": f"URI=spiffe://{TD}/ns/default/sa/web"}
    assert denied_by(request(inbound, "/", headers=forged)) == \
        "no-ALLOW-rule-matched:default/mesh-only"
    assert request(web, "/").status == 200  # web, over mTLS, is allowed
    # A rule that names a service reads the identity the callee's sidecar wrote into
    # x-forwarded-client-cert from the verified certificate: a caller's own copy, over
    # plaintext or over mTLS, is dropped before the rule reads it.
    enforce(mesh, policy("mesh-only", on("books", "ALLOW", {"from": [{"service": "web"}]})),
            "books-1")
    whole = {"x-forwarded-client-cert": f"By=spiffe://{TD}/ns/default/sa/books;Hash=00;"
                                        f"URI=spiffe://{TD}/ns/default/sa/web"}
    assert denied_by(request(inbound, "/", headers=whole)) == \
        "no-ALLOW-rule-matched:default/mesh-only"
    assert denied_by(request(ops, "/", headers=whole)) == \
        "no-ALLOW-rule-matched:default/mesh-only"
    assert request(web, "/").status == 200
