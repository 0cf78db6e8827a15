"""Per-service access logs through real sidecars: on with the Service's spec.accessLog, JSON
lines with the same fields as tap, secrets redacted, and off again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web
from tests.support.tap import FILE_LOGGER, SECRETS, Tap, identity, loggers

pytestmark = pytest.mark.envoy

BOOKS = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {{name: default}}
spec:
  accessLog: {{redactHeaders: [X-Api-Key]}}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {{name: books}}
spec: {{accessLog: {{enabled: {enabled}}}, mtls: {{mode: PERMISSIVE}}}}
"""


def access_log(mesh: Mesh, workload: str) -> Path:
    return mesh.state_dir / "workloads" / f"{workload}.default" / "access.log"


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_access_log_follows_the_service_switch_with_the_fields_of_tap(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=BOOKS.format(enabled="true"))
    port = books_and_web(mesh)
    books_log = access_log(mesh, "books-1")
    assert FILE_LOGGER in loggers(mesh, "books-1")
    assert loggers(mesh, "web-1") == []  # web's Service does not ask for one

    tap = Tap.start(mesh, "books")
    try:
        assert request(port, "/shelf/7?sort=asc", method="PUT", headers=SECRETS).status == 200
        [tapped] = [a.event for a in tap.wait("the tapped request", path="/shelf/7?sort=asc",
                                              direction="inbound")]
    finally:
        tap.stop()
    [logged] = wait_for("books-1 to log the request", lambda: [
        line for line in lines(books_log) if line["path"] == "/shelf/7?sort=asc"])
    # One table of fields feeds both: the same request reads the same in each.
    assert logged == tapped
    assert (logged["direction"], logged["method"], logged["status"]) == ("inbound", "PUT", 200)
    assert logged["source"] == identity("web") and logged["destination"] == identity("books")
    assert logged["mtls"] is True and logged["workload"] == "books-1.default"
    assert logged["requestHeaders"]["authorization"] == "[redacted]"
    assert logged["requestHeaders"]["x-api-key"] == "[redacted]"
    assert logged["responseHeaders"]["set-cookie"] is None  # absent, not redacted
    # A caller outside the mesh (PERMISSIVE): logged too, with no identity and no TLS.
    assert request(mesh.workload("books-1")["inboundPort"], "/plain").status == 200
    [plain] = wait_for("books-1 to log the plaintext request", lambda: [
        line for line in lines(books_log) if line["path"] == "/plain"])
    assert (plain["mtls"], plain["source"], plain["tlsVersion"]) == (False, None, None)
    text = books_log.read_text()
    assert all(secret not in text for secret in SECRETS.values())
    assert not access_log(mesh, "web-1").exists()

    mesh.cli("apply", "-f", "-", stdin=BOOKS.format(enabled="false"))
    mesh.sync()
    wait_for("books-1's file logger to go", lambda: loggers(mesh, "books-1") == [])
    mesh.wait_quiescent("books-1")  # connections from before the change closed
    count = len(lines(books_log))
    assert {request(port, f"/off/{i}").status for i in range(5)} == {200}
    # Not a readiness wait: nothing may be written in longer than the file flush interval (1 s).
    time.sleep(1.5)
    assert len(lines(books_log)) == count
