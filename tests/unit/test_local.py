"""tulle.local.tail: the end of a log, for error messages, without an earlier run's lines."""

from __future__ import annotations

from pathlib import Path

from tulle.local import tail


def test_tail_shows_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)))
    assert tail(log, 3) == "line 17\nline 18\nline 19"


def test_tail_since_an_offset_leaves_out_what_came_before(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("stale 1\nstale 2\n")
    start = log.stat().st_size
    with log.open("a") as file:
        file.write("this run: port taken\n")
    assert tail(log, 15, since=start) == "this run: port taken"


def test_tail_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert tail(tmp_path / "none.log") == ""
