"""Envoy's own log (``--log-path``): kept bounded, and read back for `tulle proxy logs`.

Envoy opens the file with O_APPEND, so it can be truncated under it: when the file passes
``max_bytes`` its content is copied to ``<name>.1`` (replacing the previous copy) and the file is
truncated. At most about twice ``max_bytes`` stays on disk per workload. Lines Envoy writes
between the copy and the truncation are lost; this is a debugging aid, not an audit log.

Readers get lines plus a cursor (``generation:offset``) to continue from, so following the log
neither repeats nor skips lines across a truncation. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 4 * 1024 * 1024
CHECK_INTERVAL_S = 2.0
MAX_READ_BYTES = 1024 * 1024  # per answer
MAX_TAIL_LINES = 10_000


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[str, ...]
    cursor: str  # where the next read continues


class EnvoyLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.rotated = path.with_name(path.name + ".1")
        self.max_bytes = max_bytes
        self.generation = 0  # truncations so far, by this agent

    async def keep_bounded(self, interval: float = CHECK_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval)
            self.trim()

    def trim(self) -> bool:
        """Copy and truncate the log if it is too large. True if it was."""
        try:
            if self.path.stat().st_size <= self.max_bytes:
                return False
            fd = os.open(self.rotated, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with self.path.open("rb") as source, os.fdopen(fd, "wb") as copy:
                os.fchmod(fd, 0o600)  # private from the first byte, whatever the umask
                shutil.copyfileobj(source, copy)
            os.truncate(self.path, 0)
        except OSError:
            return False
        self.generation += 1
        return True

    def tail(self, lines: int) -> LogChunk:
        """The last ``lines`` lines (at most MAX_TAIL_LINES, and MAX_READ_BYTES)."""
        lines = max(0, min(lines, MAX_TAIL_LINES))
        size = _size(self.path)
        start = max(0, size - MAX_READ_BYTES)
        current = _read(self.path, start, MAX_READ_BYTES)
        complete = current[:current.rfind(b"\n") + 1]  # a partial last line comes next time
        older: tuple[str, ...] = ()
        if len(_lines(complete)) < lines:
            older = _lines(_read(self.rotated, max(0, _size(self.rotated) - MAX_READ_BYTES),
                                 MAX_READ_BYTES))
        text = older + _lines(complete)
        return LogChunk(text[-lines:] if lines else (),
                        f"{self.generation}:{start + len(complete)}")

    def since(self, cursor: str) -> LogChunk:
        """What was written after ``cursor``; the whole tail if the cursor is unusable."""
        try:
            generation, offset = (int(part) for part in cursor.split(":", 1))
        except ValueError:
            return self.tail(MAX_TAIL_LINES)
        size = _size(self.path)
        if generation == self.generation and 0 <= offset <= size:
            data = _read(self.path, offset, MAX_READ_BYTES)
            complete = data[:data.rfind(b"\n") + 1]  # a partial last line comes next time
            return LogChunk(_lines(complete), f"{self.generation}:{offset + len(complete)}")
        if generation == self.generation - 1 and offset >= 0:
            # Truncated once since: the rest of the copy, then the current file.
            rest = _read(self.rotated, offset, MAX_READ_BYTES)
            data = _read(self.path, 0, MAX_READ_BYTES - len(rest))
            complete = data[:data.rfind(b"\n") + 1]
            return LogChunk(_lines(rest) + _lines(complete),
                            f"{self.generation}:{len(complete)}")
        return self.tail(MAX_TAIL_LINES)


def _lines(data: bytes) -> tuple[str, ...]:
    return tuple(data.decode(errors="replace").splitlines())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read(path: Path, offset: int, count: int) -> bytes:
    if count <= 0:
        return b""
    with contextlib.suppress(OSError), path.open("rb") as file:
        file.seek(offset)
        return file.read(count)
    return b""
