"""What the demo prints once it runs: the commands to try, written so that they work as
printed, pasted into the shell that started the demo.

After `bash scripts/demo.sh`, tulle is installed only in `.venv/bin`, which is not on the
shell's PATH: a hint that says `tulle ...` would answer "command not found". So the hints name
the very command that runs the demo: `tulle` when that is what the PATH finds, else its path
(relative to the current directory when it is below it, such as `.venv/bin/tulle`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def cli_command(argv: Sequence[str], cwd: str, executable: str,
                which: Callable[[str], str | None] = shutil.which) -> str:
    """How to run the tulle that runs now, from ``cwd``, as a shell command prefix."""
    program = argv[0] if argv else ""
    if Path(program).name != "tulle":
        # `python -m tulle.cli ...`: the same interpreter and module.
        return shlex.join([executable, "-m", "tulle.cli"])
    path = os.path.normpath(Path(cwd) / program)
    found = which("tulle")
    if found is not None and _same_file(found, path):
        return "tulle"
    relative = os.path.relpath(path, cwd)
    if relative.startswith(".."):
        return shlex.quote(path)
    return shlex.quote(relative if os.sep in relative else f".{os.sep}{relative}")


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def current_cli() -> str:
    return cli_command(sys.argv, str(Path.cwd()), sys.executable)


def _on_path(tulle: str) -> str:
    """How to type plain `tulle` when the hints name a path."""
    command = shlex.split(tulle)[0]
    if command == "tulle":
        return ""
    activate = Path(command).parent / "activate"
    return (f"  To type plain `tulle` instead: source {shlex.quote(str(activate))}\n"
            if activate.exists() else "")


def next_steps(tulle: str, web_port: object, state_dir: str) -> str:
    """The text printed once the demo runs. ``tulle``: the command prefix (cli_command)."""
    if not state_dir.endswith("/.tulle"):
        tulle = f"{tulle} --state-dir {shlex.quote(state_dir)}"
    return f"""
The tulle demo bookstore is running: 5 workloads, each behind its own Envoy sidecar.

  web-1 (front end) -> books-1 (v1), books-2 (v2) and authors-1; traffic-1 calls web 10 times
  a second.

Try:
  First exercise: books v2 is a canary with a bug, hidden from callers by its route's retries.
  Ask tulle what is wrong (it names books v2 within about 30 s of the start):
      {tulle} diagnose
  Open the bookstore (the web app's own port):
      curl http://127.0.0.1:{web_port}/
  Call it through the mesh, by service name, from a one-shot workload:
      {tulle} run --service me -- curl -s http://web/api
  See what the mesh knows:
      {tulle} get services
      {tulle} get workloads
      {tulle} get proxies
  Watch it:
      {tulle} stat services           # success rate, RPS, latency
      {tulle} stat workloads          # books-2 fails about 20 %
      {tulle} routes books            # per-rule metrics of the canary route
      {tulle} edges -o wide           # who calls whom, with identities
      {tulle} describe service books  # the canary route and its sources
  Logs: {state_dir}/demo/ (applications) and {state_dir}/workloads/ (agents and Envoy)
{_on_path(tulle)}
Press Ctrl-C to stop the demo."""
