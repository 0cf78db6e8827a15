"""A new user's first run: the repository cloned into an empty directory, `bash
scripts/demo.sh` from an empty HOME with only Python and pip, then every command the demo
prints, run exactly as printed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.support.docblocks import ROOT
from tests.support.mesh import wait_for

pytestmark = pytest.mark.envoy


def _hints(printed: str) -> list[str]:
    """The indented command lines of the demo's "Try:" section, comments removed."""
    section = printed[printed.index("Try:"):printed.index("Press Ctrl-C")]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in section.splitlines()
             if line.startswith("      ")]
    return [line for line in lines if line]


def test_a_fresh_clone_runs_the_demo_and_every_printed_hint(tmp_path: Path) -> None:
    clone, home = tmp_path / "tulle", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True,
                   timeout=120)
    # Only the machine's Python and pip: no venv of ours on the PATH, nothing in HOME.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not p.startswith(str(ROOT)) and ".venv" not in p)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TULLE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(HOME=str(home), PATH=path)
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        demo = subprocess.Popen(["bash", "scripts/demo.sh"], cwd=clone, env=env,
                                stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("the demo to print its hints", lambda: "Press Ctrl-C" in out.read_text()
                 or demo.poll() is not None, timeout=600, interval=1.0)
        printed = out.read_text()
        assert "Press Ctrl-C" in printed, printed[-3000:]
        hints = _hints(printed)
        assert any(h.endswith("diagnose") for h in hints), hints
        assert "source .venv/bin/activate" in printed  # how to get plain `tulle`
        for hint in hints:
            result = subprocess.run(["bash", "-c", hint], cwd=clone, env=env, text=True,
                                    capture_output=True, timeout=120, check=False)
            # diagnose exits 1 when it finds the canary's bug: that is the point.
            allowed = (0, 1) if " diagnose" in hint else (0,)
            assert result.returncode in allowed, (hint, result.stdout, result.stderr)
            assert "command not found" not in result.stderr and \
                "Traceback" not in result.stderr, (hint, result.stderr)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(60)
        finally:
            for process in psutil.process_iter():
                with contextlib.suppress(psutil.Error):
                    if process.environ().get("HOME") == str(home):
                        process.kill()
    assert demo.returncode == 0, out.read_text()[-3000:]
