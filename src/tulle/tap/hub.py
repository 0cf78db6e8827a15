"""Tap sessions: ephemeral control-plane state, never stored.

A session exists while a client streams ``GET /v1/tap``. The hub turns the open sessions into a
plan (which proxy logs what) at each mesh rebuild, and hands each request that sidecars stream
back to the sessions that want it. With no session open the plan is empty, so no listener has a
tap logger and no sidecar sends anything.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Sequence

from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.model.mesh import EMPTY_MESH, MeshSnapshot
from tulle.model.taps import NO_TAPS, ProxyTaps
from tulle.tap.events import Event, decode
from tulle.tap.filters import TapFilter
from tulle.tap.targets import EMPTY_PLAN, TapPlan, TapTarget, plan_taps, wants

# Requests a slow client may fall behind by before the newest are dropped (tap is lossy, like
# the access-log stream that feeds it).
SESSION_BUFFER = 1000


class TapSession:
    def __init__(self, session_id: int, target: TapTarget, tap_filter: TapFilter) -> None:
        self.id = session_id
        self.target = target
        self.filter = tap_filter
        self.matched = 0  # requests that passed the filter
        self.dropped = 0  # of which the client was too slow to take
        self._queue: asyncio.Queue[Event] = asyncio.Queue(SESSION_BUFFER)

    @property
    def full(self) -> bool:
        """It has matched as many requests as ``--max`` asked for."""
        limit = self.filter.max_events
        return limit is not None and self.matched >= limit

    def offer(self, event: Event) -> None:
        if self.full or not self.filter.matches(event):
            return
        self.matched += 1
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def next(self) -> Event:
        return await self._queue.get()

    def pending(self) -> int:
        return self._queue.qsize()


class TapHub:
    def __init__(self, mesh: Callable[[], MeshSnapshot] = lambda: EMPTY_MESH,
                 mark: Callable[[Event, MeshSnapshot], None] | None = None) -> None:
        """``mark``: adds to each event what only the control plane knows (where a DryRun
        HTTPRoute would have sent the request)."""
        self._mesh = mesh
        self._mark = mark
        self._sessions: dict[int, TapSession] = {}
        self._ids = itertools.count(1)
        self.plan: TapPlan = EMPTY_PLAN
        # Statistics: entries received per proxy, wanted or not.
        self.received: Counter[str] = Counter()

    def open(self, target: TapTarget, tap_filter: TapFilter) -> TapSession:
        session = TapSession(next(self._ids), target, tap_filter)
        self._sessions[session.id] = session
        return session

    def close(self, session: TapSession) -> None:
        self._sessions.pop(session.id, None)

    def sessions(self) -> list[TapSession]:
        return list(self._sessions.values())

    def replan(self, mesh: MeshSnapshot) -> None:
        """At each rebuild: the plan that goes with the new snapshot."""
        self.plan = plan_taps((s.target for s in self._sessions.values()), mesh)

    def taps_of(self, node_id: str) -> ProxyTaps:
        return self.plan.get(node_id, NO_TAPS)

    def receive(self, node_id: str, entries: Sequence[accesslog_pb2.HTTPAccessLogEntry]
                ) -> None:
        self.received[node_id] += len(entries)
        if not self._sessions:
            return  # a logger still draining after the last session closed
        mesh = self._mesh()
        redacted = mesh.settings.access_log.redacted()
        for entry in entries:
            event = decode(node_id, entry, redacted)
            if self._mark is not None:
                self._mark(event, mesh)
            for session in self._sessions.values():
                if wants(session.target, event, mesh):
                    session.offer(event)

    def status(self) -> dict[str, object]:
        return {
            "sessions": [{"id": s.id, "target": s.target.to_dict(), "matched": s.matched,
                          "dropped": s.dropped} for s in self._sessions.values()],
            "proxies": sorted(self.plan),
            "received": dict(sorted(self.received.items())),
        }
