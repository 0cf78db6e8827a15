"""`tulle proxy log-level` and `tulle proxy logs` on real sidecars."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable

import pytest

from tests.support.http import request
from tests.support.mesh import TULLE, Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy


def envoy_levels(mesh: Mesh, name: str) -> dict[str, str]:
    """Straight from Envoy's admin /logging page (POST-only in Envoy 1.40), not via tulle."""
    _, text = mesh.envoy_admin(name, "POST", "/logging")
    levels = {}
    for line in text.splitlines()[1:]:
        name_, _, level = line.strip().partition(": ")
        if level:
            levels[name_] = level
    return levels


def read_until(process: subprocess.Popen[str], done: Callable[[str], bool],
               timeout: float = 15.0) -> list[str]:
    """Lines a running command prints, until one satisfies ``done``."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no matching line within {timeout}s; saw {seen}") from None
        seen.append(line)
        if done(line):
            return seen


def test_debug_logging_for_one_component_shows_up_in_the_logs(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    assert envoy_levels(mesh, "web-1")["upstream"] == "warning"

    shown = json.loads(mesh.cli("proxy", "log-level", "web-1", "-o", "json").stdout)
    assert shown["node"] == "web-1.default" and shown["loggers"]["upstream"] == "warning"

    out = mesh.cli("proxy", "log-level", "web-1", "upstream=debug", "pool=debug").stdout
    assert "upstream" in out and "debug" in out
    levels = envoy_levels(mesh, "web-1")
    assert levels["upstream"] == "debug" and levels["pool"] == "debug"
    assert levels["http"] == "warning", "only the named components change"

    cursor = mesh.api.get("/v1/proxies/web-1.default/logs", {"tail": 1})["cursor"]
    follower = subprocess.Popen(
        [*TULLE, "--state-dir", str(mesh.state_dir), "proxy", "logs", "web-1", "--tail", "1",
         "--follow"], stdout=subprocess.PIPE, text=True, env=mesh.env())
    try:
        assert request(port, "/").status == 200

        def request_lines() -> list[str]:
            lines = mesh.api.get("/v1/proxies/web-1.default/logs", {"since": cursor})["lines"]
            return [line for line in lines if "[debug][pool]" in line]

        lines = wait_for("debug lines from the request", request_lines)
        assert any("creating a new connection" in line for line in lines), lines
        shown = mesh.cli("proxy", "logs", "web-1", "--tail", "500").stdout.splitlines()
        assert set(lines) <= set(shown), "`tulle proxy logs` shows the request's debug lines"
        assert len(mesh.cli("proxy", "logs", "web-1", "--tail", "5").stdout.splitlines()) == 5

        followed = read_until(follower, lambda line: line == lines[-1])
        assert len(followed) == len(set(followed)), "--follow repeats no line"
    finally:
        follower.terminate()
        follower.wait(10)

    mesh.cli("proxy", "log-level", "web-1.default", "info")
    assert set(envoy_levels(mesh, "web-1").values()) == {"info"}


def test_bad_levels_are_refused_and_change_nothing(mesh: Mesh) -> None:
    books_and_web(mesh)
    before = envoy_levels(mesh, "web-1")
    for args, expected in (
            (["upstream=loud"], ["'loud' is not a log level", "trace, debug, info"]),
            (["loud"], ["'loud' is not a log level", "warning, error, critical, off"]),
            (["nosuch=debug", "upstream=debug"], ["no logger 'nosuch'", "upstream", "admin"]),
            (["debug", "upstream=info"], ["do not mix"])):
        result = mesh.cli("proxy", "log-level", "web-1", *args, check=False)
        assert result.returncode != 0, args
        for text in expected:
            assert text in result.stderr, f"{text!r} not in {result.stderr}"
    assert envoy_levels(mesh, "web-1") == before

    missing = mesh.cli("proxy", "logs", "nosuch", check=False)
    assert missing.returncode != 0 and "no proxy nosuch.default" in missing.stderr
