"""`tulle top SERVICE`: the busiest paths, live, from a tap of the service."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

import pytest

from tests.support.http import request
from tests.support.mesh import TULLE, Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy


def test_top_shows_the_busiest_paths_with_their_failures(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    out, err = mesh.root / "top.out", mesh.root / "top.err"
    with out.open("w") as sink, err.open("w") as errors:
        top = subprocess.Popen(
            [*TULLE, "--state-dir", str(mesh.state_dir), "top", "books", "-o", "json",
             "--refresh", "500ms"], stdout=sink, stderr=errors, env=mesh.env())
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            for path in ("/books", "/books", "/books", "/authors", "/broken?status=503"):
                request(port, path)
    sender = threading.Thread(target=traffic, daemon=True)
    try:
        wait_for("top to attach", lambda: "tapping service default/books" in err.read_text(),
                 timeout=30)
        sender.start()

        def busiest() -> dict[str, Any] | None:
            lines = out.read_text().splitlines()
            if not lines:
                return None
            latest: dict[str, Any] = json.loads(lines[-1])
            counts = {p["path"]: p for p in latest["paths"]}
            return latest if {"/books", "/authors", "/broken"} <= set(counts) and \
                counts["/broken"]["count"] >= 2 else None
        snapshot = wait_for("top to show all three paths", busiest, timeout=30)
    finally:
        stop.set()
        top.terminate()
        top.wait(10)
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    # Frames before the sidecars log say so, not an empty table; the first figures after
    # attaching cover a whole refresh (a rate over a fraction of a second would be noise).
    first_filled = next(i for i, f in enumerate(frames) if not f.get("attaching"))
    assert all(f.get("attaching") and not f["paths"] for f in frames[:first_filled])
    assert all(f["seconds"] >= 0.5 for f in frames[first_filled:]), frames[:first_filled + 2]
    paths = {p["path"]: p for p in snapshot["paths"]}
    # Busiest first: /books is sent three times as often as the others.
    assert snapshot["paths"][0]["path"] == "/books"
    assert paths["/books"]["count"] > paths["/authors"]["count"]
    assert paths["/books"]["successRate"] == 1.0
    assert paths["/broken"]["successRate"] == 0.0 and paths["/broken"]["lastStatus"] == 503
    assert paths["/books"]["source"].endswith("/sa/web"), paths["/books"]
    # The tap ended with top: no sidecar keeps a logger.
    wait_for("the tap to detach", lambda: not mesh.api.get("/v1/tap/status")["sessions"],
             timeout=10)
