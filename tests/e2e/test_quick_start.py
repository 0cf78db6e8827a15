"""The README's Quick start, pasted into a shell in an empty HOME: every line works, the client
gets the service's answer, and nothing is left running once it is over."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.support.docblocks import ROOT, blocks, shell_env

pytestmark = pytest.mark.envoy

def _quick_start() -> list[str]:
    """The first code block after the README's "## Quick start" heading."""
    readme = ROOT / "README.md"
    heading = readme.read_text().splitlines().index("## Quick start") + 1
    block = next(b for b in blocks(readme) if b.line > heading)
    return block.text.splitlines()


def _left_running(home: Path) -> list[psutil.Process]:
    left = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("HOME") == str(home):
                left.append(process)
        except (psutil.Error, OSError):
            continue
    return left


def test_the_quick_start_works_pasted_into_a_shell(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # tulle is installed already (this suite runs from the venv): the pip line is skipped.
    lines = [line for line in _quick_start() if not line.strip().startswith("pip install")]
    script = "set -e\n" + "\n".join(lines) + "\n"
    output = tmp_path / "quick-start.out"
    try:
        # Into a file: what the script leaves running would hold a pipe open.
        with output.open("w") as sink:
            code = subprocess.run(["bash", "-c", script], cwd=home, stdout=sink,
                                  stderr=subprocess.STDOUT, timeout=180, check=False,
                                  env=shell_env(home), start_new_session=True).returncode
        printed = output.read_text()
        assert code == 0, f"{script}\n---\n{printed}"
        assert "Directory listing" in printed, printed  # the client's answer
        assert "No problems found" in printed, printed
        # Processes that were told to stop may take a moment to exit.
        _, left = psutil.wait_procs(_left_running(home), timeout=10)
        assert not left, f"still running after the Quick start: {[p.cmdline() for p in left]}"
    finally:
        for process in _left_running(home):
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
