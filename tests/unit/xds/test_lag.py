"""A peer's deadline does not count the time this process's own loop was stalled."""

from __future__ import annotations

import asyncio
import time

import pytest

from tulle.xds.lag import LoopLag


async def _later(seconds: float, value: str) -> str:
    await asyncio.sleep(seconds)
    return value


def _stall(seconds: float) -> None:
    time.sleep(seconds)  # the loop's own work: nothing else runs meanwhile


def _stalling() -> LoopLag:
    """A measured loop that will be busy from 0.1 s to 0.7 s from now."""
    lag = LoopLag()
    lag.start()
    asyncio.get_running_loop().call_later(0.1, _stall, 0.6)
    return lag


def test_a_peer_silent_while_the_loop_kept_up_times_out() -> None:
    asyncio.run(_silent())


async def _silent() -> None:
    lag = LoopLag()
    with pytest.raises(TimeoutError):  # not the answer, 10 s later
        await lag.within(_later(10, "late"), 0.3)
    await lag.stop()


def test_an_answer_read_late_because_the_loop_stalled_is_taken() -> None:
    """The answer comes 0.5 s after the start, but the loop was busy from 0.1 s to 0.7 s: a
    plain 0.3 s timeout would have closed the stream."""
    asyncio.run(_late())


async def _late() -> None:
    lag = _stalling()
    assert await lag.within(_later(0.5, "first request"), 0.3) == "first request"
    assert lag.behind > 0.3
    await lag.stop()


def test_a_stall_extends_the_deadline_but_not_forever() -> None:
    asyncio.run(_forever())


async def _forever() -> None:
    lag = _stalling()
    with pytest.raises(TimeoutError):
        await lag.within(_later(10, "never"), 0.3)
    await lag.stop()
