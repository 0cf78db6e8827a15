"""Envoy's log file: bounded by copy-and-truncate, read as a tail or followed by cursor."""

from __future__ import annotations

import os
from pathlib import Path

from tulle.agent.envoylog import EnvoyLog


def write(path: Path, *lines: str) -> None:
    with path.open("a") as file:  # O_APPEND, as Envoy opens it
        file.write("".join(line + "\n" for line in lines))


def test_small_log_is_left_alone_and_tailed(tmp_path: Path) -> None:
    log = EnvoyLog(tmp_path / "envoy.log", max_bytes=1000)
    assert log.tail(5).lines == ()  # no file yet
    write(log.path, "a", "b", "c")
    assert not log.trim()
    assert log.tail(2).lines == ("b", "c")
    assert log.tail(10).lines == ("a", "b", "c")


def test_trim_bounds_the_file_and_keeps_one_copy(tmp_path: Path) -> None:
    log = EnvoyLog(tmp_path / "envoy.log", max_bytes=100)
    for round_ in range(5):
        write(log.path, *(f"line {round_}-{i:03}" for i in range(20)))
        assert log.trim()
        assert log.path.stat().st_size == 0
        assert log.rotated.stat().st_size <= 400
    assert log.generation == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envoy.log", "envoy.log.1"]
    assert oct(log.rotated.stat().st_mode & 0o777) == "0o600"
    write(log.path, "new")
    assert log.tail(2).lines == ("line 4-019", "new"), "the tail reaches into the copy"


def test_the_copy_is_private_from_its_first_byte_whatever_the_umask(tmp_path: Path) -> None:
    log = EnvoyLog(tmp_path / "envoy.log", max_bytes=10)
    log.rotated.write_text("an older copy, left open\n")
    log.rotated.chmod(0o666)
    write(log.path, "a line longer than ten bytes")
    previous = os.umask(0)
    try:
        assert log.trim()
    finally:
        os.umask(previous)
    assert oct(log.rotated.stat().st_mode & 0o777) == "0o600"
    assert log.rotated.read_text() == "a line longer than ten bytes\n"


def test_following_neither_repeats_nor_skips(tmp_path: Path) -> None:
    log = EnvoyLog(tmp_path / "envoy.log", max_bytes=30)
    write(log.path, "one")
    chunk = log.tail(10)
    assert chunk.lines == ("one",)
    with log.path.open("a") as file:
        file.write("two\nthr")  # a partial line waits for its end
    chunk = log.since(chunk.cursor)
    assert chunk.lines == ("two",)
    with log.path.open("a") as file:
        file.write("ee\n" + "x" * 40 + "\n")
    assert log.trim()  # truncated between two reads
    write(log.path, "four")
    chunk = log.since(chunk.cursor)
    assert chunk.lines == ("three", "x" * 40, "four")
    assert log.since(chunk.cursor).lines == ()
    assert log.since("garbage").lines == log.tail(10_000).lines
