"""Running the collectors and writing the archive.

Every collector runs with its own deadline, a few at a time; one that fails or runs late is
recorded in ``manifest.json`` and never stops the report. Every file passes through the
redactor before it is written. The archive is private (0600) from its first byte and appears
under its final name only when complete.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tulle.bugreport.collectors import Collector
from tulle.bugreport.redact import Redactor

WORKERS = 4
ROOT = "tulle-bug-report"


@dataclass(frozen=True)
class Outcome:
    path: str
    ok: bool
    seconds: float
    error: str | None = None
    content: bytes = b""

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": self.path, "ok": self.ok,
                                 "seconds": round(self.seconds, 3)}
        if self.error is not None:
            entry["error"] = self.error
        return entry


def collect(collectors: Sequence[Collector], redactor: Redactor) -> list[Outcome]:
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="bug-report")
    starts: dict[str, float] = {}  # a deadline counts from when its collector starts

    def timed(collector: Collector) -> Any:
        starts[collector.path] = time.monotonic()
        return collector.produce()

    try:
        futures = [(c, pool.submit(timed, c)) for c in collectors]
        return [_outcome(c, future, starts, redactor) for c, future in futures]
    finally:
        # A collector past its deadline is abandoned, not waited for.
        pool.shutdown(wait=False, cancel_futures=True)


def _outcome(collector: Collector, future: Future[Any], starts: dict[str, float],
             redactor: Redactor) -> Outcome:
    try:
        data = _result(collector, future, starts)
    except FutureTimeout:
        future.cancel()
        return Outcome(collector.path, False, collector.deadline_s,
                       f"deadline of {collector.deadline_s:.0f}s exceeded")
    except Exception as exc:  # any failure is recorded, never fatal
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return Outcome(collector.path, False, _ran(collector, starts),
                       redactor.text(f"{type(exc).__name__}: {message}"))
    return Outcome(collector.path, True, _ran(collector, starts),
                   content=render(data, redactor))


def _result(collector: Collector, future: Future[Any], starts: dict[str, float]) -> Any:
    while True:
        begun = starts.get(collector.path)
        if begun is None:  # still queued behind others
            try:
                return future.result(timeout=0.2)
            except FutureTimeout:
                continue
        return future.result(timeout=max(0.0, begun + collector.deadline_s
                                         - time.monotonic()))


def _ran(collector: Collector, starts: dict[str, float]) -> float:
    return time.monotonic() - starts.get(collector.path, time.monotonic())


def render(data: Any, redactor: Redactor) -> bytes:
    """The redacted bytes of one file: text as it is, anything else as indented JSON."""
    if isinstance(data, str):
        text = redactor.text(data)
    else:
        text = redactor.scrub(json.dumps(redactor.value(data), indent=2)) + "\n"
    return text.encode()


def write(path: Path, outcomes: Sequence[Outcome], redactor: Redactor,
          extra: dict[str, Any]) -> None:
    manifest = {**extra, "files": [o.to_dict() for o in outcomes]}
    members = [(o.path, o.content) for o in outcomes if o.ok]
    members.append(("manifest.json", render(manifest, redactor)))
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when an old partial file was there
        with os.fdopen(fd, "wb") as raw, \
                tarfile.open(fileobj=raw, mode="w:gz") as archive:
            now = time.time()
            for name, content in members:
                info = tarfile.TarInfo(f"{ROOT}/{name}")
                info.size, info.mode, info.mtime = len(content), 0o600, int(now)
                archive.addfile(info, io.BytesIO(content))
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
