"""`tulle history` and `tulle rollback` with real sidecars: a bad change is undone by rolling
back, traffic through the real Envoys recovers, and the rollback is itself a revision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

V1 = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
"""

# v2 sends every request to a declared service that has no instance: 503.
V2 = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: void}
spec: {protocol: http}
---
""" + V1.replace("[{name: books}]\n", "[{name: void}]\n").replace(
    "parentRefs: [{name: void}]", "parentRefs: [{name: books}]")


def status_of(port: int) -> int:
    return request(port, "/").status


def acked(mesh: Mesh) -> dict[str, dict[str, str]]:
    return {p["node"]: {t: s["ackedVersion"] for t, s in p["types"].items()}
            for p in mesh.api.get("/v1/proxies")}


def history(mesh: Mesh, *args: str) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = json.loads(
        mesh.cli("history", *args, "-o", "json").stdout)
    return changes


def test_rollback_undoes_a_bad_change_and_is_a_revision(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=V1)
    mesh.sync()
    assert status_of(port) == 200
    good = mesh.status()["storeRevision"]

    mesh.cli("apply", "-f", "-", stdin=V2)
    mesh.sync()
    assert status_of(port) == 503, "v2 must break traffic"
    bad = mesh.status()["storeRevision"]
    assert bad == good + 1

    changes = history(mesh)
    assert [(c["revision"], c["kind"], c["action"]) for c in changes] == [
        (bad, "HTTPRoute", "configured"), (bad, "Service", "created"),
        (good, "HTTPRoute", "created")]
    route_v2 = changes[0]
    assert route_v2["before"]["spec"]["rules"][0]["backendRefs"] == [{"name": "books"}]
    assert route_v2["after"]["spec"]["rules"][0]["backendRefs"] == [{"name": "void"}]
    text = mesh.cli("history", "httproute", "books").stdout
    assert f"REVISION {bad} " in text and f"REVISION {good} " in text
    assert "-    - name: books" in text and "+    - name: void" in text
    assert "Service" not in text, "history KIND NAME shows that resource only"

    dry = mesh.cli("rollback", str(good), "--dry-run").stdout
    assert "dry run" in dry and "service/void (default) deleted" in dry
    assert mesh.status()["storeRevision"] == bad, "a dry run changes nothing"

    result = json.loads(mesh.cli("rollback", str(good), "-o", "json").stdout)
    assert result["newRevision"] == bad + 1
    assert {(c["kind"], c["action"]) for c in result["changes"]} == {
        ("HTTPRoute", "configured"), ("Service", "deleted")}
    mesh.sync()
    assert status_of(port) == 200, "rolled back: traffic flows through the sidecars again"
    assert [(c["revision"], c["action"]) for c in history(mesh, "--limit", "2")] == [
        (bad + 1, "configured"), (bad + 1, "deleted")]

    # The rollback is a revision too: rolling back to before it breaks traffic again.
    mesh.cli("rollback", str(bad))
    mesh.sync()
    assert status_of(port) == 503
    mesh.cli("rollback", str(good))
    mesh.sync()
    wait_for("traffic to flow again", lambda: status_of(port) == 200)


def test_rollback_recreates_a_deleted_resource(mesh: Mesh) -> None:
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=V1)
    created = mesh.status()["storeRevision"]
    mesh.cli("delete", "httproute", "books")
    mesh.sync()
    assert mesh.cli("get", "httproutes", "books", check=False).returncode != 0

    out = mesh.cli("rollback", str(created)).stdout
    assert "httproute/books (default) created" in out
    stored = json.loads(mesh.cli("get", "httproutes", "books", "-o", "json").stdout)
    assert json.dumps(stored).count('"backendRefs"') == 1
    mesh.sync()
    routes = json.dumps(mesh.admin("web-1", "config_dump"))
    assert "outbound|books.default" in routes
    assert [c["action"] for c in history(mesh, "httproute", "books")] == [
        "created", "deleted", "created"]


def test_bad_rollbacks_change_nothing(mesh: Mesh) -> None:
    books_and_web(mesh)
    extra = mesh.run("extra", name="extra-1")
    route_to_extra = V1.replace("[{name: books}]\n", "[{name: extra}]\n").replace(
        "parentRefs: [{name: extra}]", "parentRefs: [{name: books}]")
    mesh.cli("apply", "-f", "-", stdin=route_to_extra)
    with_route = mesh.status()["storeRevision"]
    mesh.cli("delete", "httproute", "books")
    extra.stop()
    wait_for("extra to be gone", lambda: all(
        w["name"] != "extra-1" for w in mesh.api.get("/v1/workloads")))
    mesh.sync()
    before_status, before_acked = mesh.status(), acked(mesh)

    for revision, expected in (
            ("999", ["revision 999 does not exist", f"1 to {with_route + 1}"]),
            ("0", ["revision 0 does not exist", "tulle history"]),
            (str(with_route), [f"cannot restore revision {with_route}", "nothing was changed",
                               'unknown service "extra"', "HTTPRoute default/books"])):
        result = mesh.cli("rollback", revision, check=False)
        assert result.returncode != 0, revision
        for text in expected:
            assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"

    after = mesh.status()
    assert after["storeRevision"] == before_status["storeRevision"]
    assert after["meshVersion"] == before_status["meshVersion"]
    assert acked(mesh) == before_acked
    assert mesh.cli("get", "httproutes", "books", check=False).returncode != 0


OTHER = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: other}
spec: {protocol: http}
"""


def test_revert_undoes_one_revision_and_nothing_after_it(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=V1)
    good = mesh.status()["storeRevision"]
    mesh.cli("apply", "-f", "-", stdin=V2)
    bad = good + 1
    mesh.cli("apply", "-f", "-", stdin=OTHER)
    later = bad + 1
    mesh.sync()
    assert status_of(port) == 503, "v2 must break traffic"

    dry = mesh.cli("rollback", "--revert", str(bad), "--dry-run").stdout
    assert dry.startswith(f"Reverting revision {bad} would change (dry run"), dry
    assert "httproute/books (default) configured" in dry
    assert "service/void (default) deleted" in dry
    assert "-    - name: void" in dry and "+    - name: books" in dry, "the dry run shows the diff"
    assert "other" not in dry, "a later, unrelated change is not touched"
    assert mesh.status()["storeRevision"] == later, "a dry run changes nothing"

    result = json.loads(mesh.cli("rollback", "--revert", str(bad), "-o", "json").stdout)
    assert result["mode"] == "revert" and result["revision"] == bad
    assert result["newRevision"] == later + 1
    assert {(c["kind"], c["name"], c["action"]) for c in result["changes"]} == {
        ("HTTPRoute", "books", "configured"), ("Service", "void", "deleted")}
    mesh.sync()
    wait_for("traffic to flow again", lambda: status_of(port) == 200)
    assert mesh.cli("get", "services", "other").returncode == 0, \
        "the change made after the reverted revision stays"
    assert mesh.cli("get", "services", "void", check=False).returncode != 0

    # The revert is a revision too, and reverting it brings the bad change back.
    mesh.cli("rollback", "--revert", str(later + 1))
    mesh.sync()
    wait_for("traffic to break again", lambda: status_of(port) == 503)


def test_revert_refuses_when_a_later_revision_changed_the_same_resource(mesh: Mesh) -> None:
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=V1)
    created = mesh.status()["storeRevision"]
    mesh.cli("apply", "-f", "-", stdin=V2)
    mesh.sync()
    before_status, before_acked = mesh.status(), acked(mesh)

    result = mesh.cli("rollback", "--revert", str(created), check=False)
    assert result.returncode != 0
    for text in (f"cannot revert revision {created}",
                 f"HTTPRoute default/books by revision {created + 1}", "nothing was changed",
                 f"tulle rollback --revert {created + 1} --dry-run"):
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    assert mesh.cli("rollback", "--revert", str(created), "--dry-run",
                    check=False).returncode != 0, "a dry run of a conflict fails the same way"
    usage = mesh.cli("rollback", check=False)
    assert usage.returncode == 2 and "--revert REVISION" in usage.stderr
    missing = mesh.cli("rollback", "--revert", "99", check=False)
    assert missing.returncode != 0 and "revision 99 does not exist" in missing.stderr

    assert mesh.status()["storeRevision"] == before_status["storeRevision"]
    assert mesh.status()["meshVersion"] == before_status["meshVersion"]
    assert acked(mesh) == before_acked


def test_a_revert_that_would_break_a_later_resource_changes_nothing(mesh: Mesh) -> None:
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=OTHER)
    created = mesh.status()["storeRevision"]
    # A later revision adds a route to "other": a different resource, so no conflict, but
    # deleting "other" (the inverse of its creation) would leave that route dangling.
    mesh.cli("apply", "-f", "-", stdin=V1.replace("[{name: books}]\n", "[{name: other}]\n")
             .replace("parentRefs: [{name: other}]", "parentRefs: [{name: books}]"))
    mesh.sync()
    before = mesh.status()

    result = mesh.cli("rollback", "--revert", str(created), check=False)
    assert result.returncode != 0
    for text in (f"cannot revert revision {created}", "nothing was changed",
                 'unknown service "other"', "HTTPRoute default/books"):
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    after = mesh.status()
    assert (after["storeRevision"], after["meshVersion"]) == (
        before["storeRevision"], before["meshVersion"])
    assert mesh.cli("get", "services", "other").returncode == 0
