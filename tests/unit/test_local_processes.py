"""Process states from /proc: how diagnose tells a frozen process from a dead one."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tulle.local import STOPPED_STATES, process_state


def test_a_running_stopped_and_gone_process() -> None:
    state, command = process_state(os.getpid())
    assert state in ("R", "S") and "python" in command
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process_state(child.pid)[0] not in STOPPED_STATES \
                and time.monotonic() < deadline:  # the stop is asynchronous
            time.sleep(0.01)
        assert process_state(child.pid) == ("T", "sleep 30")
    finally:
        child.kill()
        child.wait()
    assert process_state(child.pid) == ("", "")
    assert process_state(0) == ("", "")
