"""An HTTPRoute change in dry run, through real sidecars: callers keep routing by the version in
force, the control plane counts where each request would have gone, diagnose warns of the
requests it would fail, and the promoted route then does what the counts said."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.support.http import Reply, request
from tests.support.mesh import Mesh, wait_for
from tests.support.tap import Tap
from tests.support.whatif import what_if
from tulle.cli.cmd_tap import format_event

pytestmark = pytest.mark.envoy

IN_FORCE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-route}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: all
    backendRefs: [{name: books}]
"""

# The change: /v2 to books-v2 (and a header that says so), /list split 50/50; nothing else
# matches, so everything else would get 404.
CHANGE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-route}
spec:
  mode: DryRun
  parentRefs: [{name: books}]
  rules:
  - name: v2
    matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: x-beta, value: "1"}]}]
    backendRefs: [{name: books-v2}]
  - name: split
    matches: [{path: {type: PathPrefix, value: /list}}]
    backendRefs: [{name: books, weight: 50}, {name: books-v2, weight: 50}]
"""


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def send(port: int, path: str, **headers: str) -> Reply:
    """A request from web-1's application, through its sidecar's outbound listener."""
    return request(port, path, headers={"Host": "books", **headers})


def trial_of(mesh: Mesh) -> dict[str, Any] | None:
    stat = json.loads(mesh.cli("stat", "services", "books", "-o", "json").stdout)
    [row] = [r for r in stat["services"] if r["name"] == "books"]
    return row["routeTrial"]


def findings(mesh: Mesh, code: str) -> list[dict[str, Any]]:
    result = mesh.cli("diagnose", "-o", "json", check=False)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert not report["ruleErrors"], report["ruleErrors"]
    return [f for f in report["findings"] if f["code"] == code]


def test_a_route_change_in_dry_run_is_counted_then_promoted(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.run("books-v2", name="books-v2-1")
    mesh.run("web", name="web-1")
    port = int(mesh.workload("web-1")["outboundPort"])
    mesh.cli("apply", "-f", "-", stdin=IN_FORCE)
    mesh.sync()
    mesh.wait_endpoints("web-1", "books-v2", {"books-v2-1"})

    mesh.cli("apply", "-f", "-", stdin=CHANGE)
    mesh.sync()
    mesh.wait_quiescent("web-1")
    stored = mesh.cli("get", "httproute", "books-route", "-o", "json").stdout
    assert '"mode": "DryRun"' in stored and "tulle.io/in-force" in stored, stored
    assert "tulle-route-trial" in mesh.admin("web-1", "config_dump")
    described = mesh.cli("describe", "service", "books").stdout
    assert "Routes with HTTPRoute default/books-route in force (dry run" in described, described
    asked = what_if(mesh, "web", "http://books/about")
    assert {s["step"]: s["result"] for s in asked["steps"]}["route in dry run"] == \
        "404 (no rule matches)", asked
    assert asked["outcome"] == "sent to books.default over mutual TLS", asked

    # Nothing changes for callers: the version in force sends everything to books.
    tap = Tap.start(mesh, "books")
    paths = ["/v2/a"] * 6 + ["/list/1"] * 20 + ["/about"] * 4
    replies = [send(port, path) for path in paths]
    replies += [send(port, "/", **{"x-beta": "1"}) for _ in range(2)]
    assert {(r.status, r.workload) for r in replies} == {(200, "books-1")}, replies

    # tap says, on the caller's side, where the dry-run version would send each request.
    tap.wait("the requests in tap", count=len(replies), direction="outbound")
    tap.stop()
    marks = {(e["path"], e["wouldRoute"]) for e in tap.events(direction="outbound")}
    assert marks == {
        ("/v2/a", "default/books-route:v2 -> books-v2.default"),
        ("/list/1", "default/books-route:split -> books.default 50 %, books-v2.default 50 %"),
        ("/about", "404 (no rule matches)"),
        ("/", "default/books-route:v2 -> books-v2.default"),
    }, marks
    assert "would-route: 404 (no rule matches)" in format_event(
        next(e for e in tap.events(direction="outbound") if e["path"] == "/about"))

    def counted() -> dict[str, Any] | None:
        trial = trial_of(mesh)
        return trial if trial and trial["requests"] == len(replies) else None
    trial = wait_for("the dry run's counts in tulle stat", counted)
    rules = {(r["route"], r["rule"]): r for r in trial["rules"]}
    v2, split, none = (rules[("default/books-route", "v2")],
                       rules[("default/books-route", "split")], rules[("", "")])
    # By path and by header, with the header's value read from the caller's log.
    assert (v2["requests"], v2["to"], v2["moved"]) == (8, {"books-v2.default": 8}, 8), v2
    assert split["requests"] == 20 and sum(split["to"].values()) == 20, split
    assert set(split["to"]) <= {"books.default", "books-v2.default"}, split
    assert split["moved"] == split["to"].get("books-v2.default", 0), split
    assert (none["requests"], none["to"], none["moved"]) == (4, {"404": 4}, 4), none
    table = mesh.cli("stat").stdout
    assert "DRY-RUN ROUTE WOULD MATCH" in table and "default/books-route:split" in table, table
    assert "(no rule: 404)" in table, table

    # diagnose warns of the 404s before anyone promotes the route.
    [warned] = wait_for("TUL1031 in tulle diagnose", lambda: findings(mesh, "TUL1031"))
    assert warned["subject"] == "httproute/books-route.default", warned
    assert "would fail 4 of the 32 requests" in warned["cause"], warned
    assert any("4 would get 404" in line for line in warned["evidence"]), warned

    # Promoted, the route does what the dry run counted.
    history = mesh.cli("history").stdout
    mesh.cli("policy", "promote", "books-route")
    promotion = mesh.cli("history").stdout.replace(history, "")
    assert "-  mode: DryRun" in promotion and "+  mode: Enforce" in promotion, promotion
    mesh.sync()
    assert {send(port, "/v2/a").workload for _ in range(4)} == {"books-v2-1"}
    assert send(port, "/", **{"x-beta": "1"}).workload == "books-v2-1"
    assert send(port, "/about").status == 404
    spread = Counter(send(port, "/list/1").workload for _ in range(40))
    assert set(spread) == {"books-1", "books-v2-1"}, spread
    stored = mesh.cli("get", "httproute", "books-route", "-o", "json").stdout
    assert "tulle.io/in-force" not in stored, stored
    # No trial any more: callers stop logging requests to books.
    assert "tulle-route-trial" not in mesh.admin("web-1", "config_dump")
    again = mesh.cli("policy", "promote", "books-route", check=False)
    assert again.returncode != 0 and "enforced already" in again.stderr, again.stderr
