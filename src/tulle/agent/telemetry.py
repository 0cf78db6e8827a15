"""The agent's telemetry: reads its Envoy's stats, reports what changed to the control plane
every interval, and serves the sidecar's Prometheus metrics.

Reading: Envoy merges histograms only when asked (``stats_flush_on_admin``: every read asks),
and a read shows the previous merge. A periodic report reads once: its histograms are those
merged when the previous report read, an interval behind its counters, and the next report
carries the rest (deltas of cumulative figures lose nothing). A report on demand (`tulle
diagnose`), the last one, and a /metrics scrape want everything up to now: they ask twice, a
moment apart. What Envoy keeps is already only what tulle reads (the bootstrap's stats
matcher), so the read needs no filter. The control plane receives deltas of tulle series (a
few hundred bytes per interval for a busy sidecar), never raw Envoy stats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from tulle.agent import http
from tulle.agent.envoyadmin import AdminInterface
from tulle.telemetry.envoy_stats import Series, delta, extract, parse
from tulle.telemetry.prometheus import Labels, render, sidecar_families
from tulle.telemetry.schema import PROXY, RESTARTS, SeriesKey

log = logging.getLogger("tulle.agent")

DEFAULT_INTERVAL_S = 5.0
MERGE_WAIT_S = 0.05


def interval_from_env() -> float | None:
    """``TULLE_TELEMETRY_INTERVAL`` (seconds) overrides the default, for tests and demos;
    ``off`` (or 0) stops reporting, for benchmarks that compare against no telemetry."""
    raw = os.environ.get("TULLE_TELEMETRY_INTERVAL", "")
    if raw.strip().lower() in ("off", "0"):
        return None
    try:
        return max(0.2, float(raw)) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


class Telemetry:
    def __init__(self, admin: AdminInterface, proxy_labels: Labels,
                 send: Callable[[dict[str, Any]], Awaitable[bool]],
                 interval_s: float | None = DEFAULT_INTERVAL_S,
                 restarts: Callable[[], int] = lambda: 0) -> None:
        """``restarts``: how many times the agent has restarted Envoy, reported with the
        sidecar's own series (diagnose's TUL1018)."""
        self._admin = admin
        self._restarts = restarts
        self._labels = proxy_labels
        self._send = send
        self.interval_s = interval_s
        self._reported: Series = {}
        self._lock = asyncio.Lock()
        # One report at a time: a report on demand and the periodic one must not both send
        # the same delta (the control plane would count it twice).
        self._report_lock = asyncio.Lock()

    async def read(self, fresh: bool = True) -> Series:
        """``fresh``: histograms up to now (two requests); otherwise up to the previous read
        (one request)."""
        async with self._lock:  # one merge-and-read at a time
            if fresh:
                await self._get("/stats?filter=%5E%24")  # "^$": matches nothing, merges
                await asyncio.sleep(MERGE_WAIT_S)
            body = await self._get("/stats?format=json&histogram_buckets=detailed")
        series = extract(parse(json.loads(body)))
        series.setdefault(SeriesKey(PROXY), {})[RESTARTS] = self._restarts()
        return series

    async def run(self) -> None:
        """Report at once (the sidecar just became ready: the control plane and `tulle check`
        know it reports), then every interval. A failed report is retried with the next one
        (deltas pile up)."""
        if self.interval_s is None:
            return
        while True:
            try:
                await self.report(fresh=False)
            except (OSError, TimeoutError, http.HttpError, ValueError) as exc:
                log.debug("cannot read Envoy's stats: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def report(self, fresh: bool = True) -> bool:
        """Read Envoy's stats now and send what changed since the last report that arrived:
        every interval (``fresh`` False: one read), on demand (`tulle diagnose` wants fresh
        evidence), and a last time when the workload stops. True when the control plane has
        everything up to now. Raises when Envoy's stats cannot be read; the caller bounds the
        time it may take."""
        if self.interval_s is None:
            return False  # telemetry is off (benchmarks): nothing is ever reported
        async with self._report_lock:
            now = await self.read(fresh)
            changes = delta(self._reported, now)
            if not changes:
                return True
            payload = {"interval": self.interval_s,
                       "series": [{**key.to_wire(), "v": values}
                                  for key, values in sorted(changes.items())]}
            if not await self._send(payload):
                return False
            self._reported = now
            return True

    async def metrics(self) -> str:
        return render(sidecar_families(await self.read(), self._labels))

    async def _get(self, target: str) -> bytes:
        response = await self._admin.request("GET", target, timeout=5.0)
        if response.status != 200:
            raise http.HttpError(f"Envoy's admin answered {response.status} to {target}")
        return response.body
