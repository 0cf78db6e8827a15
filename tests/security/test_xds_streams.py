"""xDS streams belong to their proxy.

Probed before the fix: a new ADS stream with a copied xDS credential was accepted for a node
that already had one, received the workload's config (its SDS secrets included), and evicted
the real Envoy's stream without a word; streams that never sent a first request were held
open forever (and so were silent access-log streams on the same port). Now the second stream
is refused, the real Envoy keeps its stream and config, `tulle check --proxy` and `tulle
diagnose` report it, and silent streams are closed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import pytest

from tests.security.xds_client import open_stream, silent_streams, xds_credential
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

BOOKS = "books-1.default"
# Far above the control plane's limit for a first request (5 s, FIRST_REQUEST_TIMEOUT_S in
# tulle.xds.admission), which the closed streams' message names.
GIVE_UP_S = 20.0


def proxy_view(mesh: Mesh, node: str) -> dict[str, Any]:
    [view] = [p for p in mesh.api.get("/v1/proxies") if p["node"] == node]
    return dict(view)


def test_a_copied_xds_credential_cannot_take_a_live_proxys_stream(exposed_mesh: Mesh) -> None:
    mesh = exposed_mesh
    books_and_web(mesh)
    web = mesh.workloads[1]
    mesh.sync()
    before = proxy_view(mesh, BOOKS)
    token = xds_credential(mesh, "books-1")

    for delta in (False, True):
        outcome = open_stream(mesh, token, BOOKS, delta=delta)
        assert outcome.received == (), f"the second stream was served config: {outcome}"
        assert outcome.code is grpc.StatusCode.ALREADY_EXISTS, outcome
        assert "already has a live xDS stream" in outcome.details

    # The real Envoy kept its stream (same peer, same start) and its config.
    after = proxy_view(mesh, BOOKS)
    assert (after["peer"], after["connectedAt"]) == (before["peer"], before["connectedAt"])
    mesh.sync()
    assert proxy_view(mesh, BOOKS)["state"] == "SYNCED"
    assert mesh.call(web, "http://books/")["status"] == 200
    assert mesh.nacks() == []

    events = [e for e in mesh.api.get("/v1/xds/stream-events") if e["kind"] == "duplicate"]
    assert [(e["node"], e["holderPeer"]) for e in events] == [(BOOKS, before["peer"])] * 2

    result = mesh.cli("check", "--proxy", "--wait", "2", "-o", "json", check=False,
                      timeout=120)
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.returncode == 1
    assert checks["proxies-streams"]["status"] == "failed"
    assert checks["proxies-streams"]["message"].startswith(
        f"{BOOKS}: 2 second xDS stream(s) with its credential refused")

    diagnosis = mesh.cli("diagnose", "-o", "json", "--window", "30s", check=False)
    findings = json.loads(diagnosis.stdout)["findings"]
    assert [(f["code"], f["subject"]) for f in findings][:1] == [
        ("TUL1066", f"proxy/{BOOKS}")], findings
    assert any(before["peer"] in line for line in findings[0]["evidence"])


def test_a_stream_that_never_sends_a_first_request_is_closed(exposed_mesh: Mesh) -> None:
    mesh = exposed_mesh
    mesh.run("books", name="books-1")
    # Access-log streams share the port: they are held to the same limit.
    outcomes = silent_streams(mesh, 60, GIVE_UP_S, access_logs=20)
    held = [o for o in outcomes if o.code is None or o.seconds >= GIVE_UP_S - 1]
    assert held == [], f"{len(held)} silent streams were held open until the client gave up"
    assert {o.code for o in outcomes} == {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert all(re.search("no first (request|message) within", o.details) for o in outcomes), \
        outcomes
    wait_for("the silent streams to be recorded", lambda: len(
        [e for e in mesh.api.get("/v1/xds/stream-events") if e["kind"] == "silent"]) == 60)
    # The real proxy was not disturbed.
    assert proxy_view(mesh, BOOKS)["state"] == "SYNCED"
    assert mesh.nacks() == []
