"""How far behind its schedule this process's event loop ran: time a peer spent waiting on our
own work, which must not count as the peer's silence.

A thousand proxies connecting at once keep an xDS process busy sending first configs for
many seconds; a stream opened meanwhile has its first request read late, though its proxy sent
it at once. Deadlines for a peer (the first request) are extended by the lag accrued while
they ran, so that a busy process does not close the streams of proxies that did nothing wrong
(each of which would reconnect and cost a whole config again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

TICK_S = 0.1
# Lateness under this, per tick, is the loop's ordinary jitter, not lag.
JITTER_S = 0.02


class LoopLag:
    def __init__(self) -> None:
        self.behind = 0.0  # seconds the loop ran late, in all (never goes down)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring on the running loop (once; later calls do nothing)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._measure())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK_S)
            late = loop.time() - before - TICK_S
            if late > JITTER_S:
                self.behind += late

    async def within(self, awaitable: Awaitable[T], timeout_s: float) -> T:
        """``awaitable``'s result if it comes within ``timeout_s`` plus the lag accrued while
        waiting; else TimeoutError (``awaitable`` is cancelled)."""
        self.start()
        loop = asyncio.get_running_loop()
        future = asyncio.ensure_future(awaitable)
        budget, mark = timeout_s, self.behind
        try:
            while True:
                began = loop.time()
                done, _ = await asyncio.wait({future}, timeout=budget)
                if done:
                    return future.result()
                # The lag the monitor saw meanwhile, or this wait's own lateness (its timer
                # may fire before the monitor's, after one long stall).
                own = loop.time() - began - budget
                budget, mark = max(self.behind - mark, own), self.behind
                if budget <= JITTER_S:
                    raise TimeoutError
        finally:
            future.cancel()
