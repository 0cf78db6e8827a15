"""The demo's hints work as printed: they name the tulle that runs the demo."""

from __future__ import annotations

import pytest

from tulle.demo.hints import cli_command, next_steps

VENV_TULLE = "/src/tulle/.venv/bin/tulle"


def nowhere(name: str) -> str | None:
    return None


@pytest.mark.parametrize(("argv0", "cwd", "on_path", "expected"), [
    # scripts/demo.sh from the repository: tulle is only in .venv/bin.
    (VENV_TULLE, "/src/tulle", None, ".venv/bin/tulle"),
    (".venv/bin/tulle", "/src/tulle", None, ".venv/bin/tulle"),
    # ...from elsewhere: the full path.
    (VENV_TULLE, "/home/me", None, VENV_TULLE),
    # ...from the bin directory itself: ./tulle, not a bare name the shell would search.
    (VENV_TULLE, "/src/tulle/.venv/bin", None, "./tulle"),
    # tulle on the PATH is this one (an activated venv, a pip install): plain `tulle`.
    (VENV_TULLE, "/home/me", VENV_TULLE, "tulle"),
    # Another tulle on the PATH: not that one.
    (VENV_TULLE, "/home/me", "/usr/bin/tulle", VENV_TULLE),
    # A path with a space is quoted.
    ("/my dir/.venv/bin/tulle", "/home/me", None, "'/my dir/.venv/bin/tulle'"),
    # python -m tulle.cli: the same interpreter and module.
    ("/src/tulle/src/tulle/cli/__main__.py", "/home/me", None, "/py/bin/python -m tulle.cli"),
], ids=["repo, absolute", "repo, relative", "elsewhere", "bin dir", "on the PATH",
        "another on the PATH", "quoted", "module"])
def test_cli_command(argv0: str, cwd: str, on_path: str | None, expected: str,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tulle.demo.hints._same_file", lambda a, b: a == b)
    assert cli_command([argv0, "demo"], cwd, "/py/bin/python",
                       which=lambda name: on_path) == expected


def test_every_hint_uses_the_command_and_the_state_dir() -> None:
    text = next_steps(".venv/bin/tulle", 8123, "/tmp/state")
    commands = [line.strip() for line in text.splitlines()
                if line.startswith("      ") and not line.strip().startswith("curl ")]
    assert len(commands) == 10 and all(
        c.startswith(".venv/bin/tulle --state-dir /tmp/state ") for c in commands), commands
    assert ".venv/bin/tulle --state-dir /tmp/state diagnose" in text
    assert "http://127.0.0.1:8123/" in text
    default = next_steps("tulle", 1, "/home/me/.tulle")
    assert "      tulle diagnose" in default and "--state-dir" not in default
