"""Rolling windows of what every sidecar reported, kept in the control plane's memory.

Time is cut into slots (5 s by default). A report's counter deltas are added to the current
slot; a window query sums the slots it covers. Slots older than the horizon (15 min) are
dropped, so memory is bounded by the busy series of the last 15 minutes: idle series cost
nothing. Gauges are kept as each proxy's latest value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tulle.telemetry.schema import GAUGES, SeriesKey

Values = dict[str, int]
# (node id, series) -> values
Sample = dict[tuple[str, SeriesKey], Values]

DEFAULT_SLOT_S = 5.0
DEFAULT_HORIZON_S = 15 * 60.0


@dataclass(frozen=True)
class Window:
    """The sum of the counters reported over ``seconds``, and the gauges as last seen."""

    seconds: float
    # The time the summed slots cover, at least ``seconds``: the slot holding the window's
    # start counts whole. Rates divide by it.
    span: float
    counters: Mapping[tuple[str, SeriesKey], Mapping[str, int]]
    gauges: Mapping[tuple[str, SeriesKey], Mapping[str, int]]
    # Seconds since each node last reported.
    last_report_age: Mapping[str, float]


def add_into(target: Values, values: Mapping[str, int]) -> None:
    for name, value in values.items():
        target[name] = target.get(name, 0) + value


class TelemetryWindows:
    def __init__(self, slot_s: float = DEFAULT_SLOT_S, horizon_s: float = DEFAULT_HORIZON_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slot_s = slot_s
        self.horizon_s = horizon_s
        self._clock = clock
        self._slots: deque[tuple[int, Sample]] = deque()
        self._gauges: Sample = {}
        self._last_report: dict[str, float] = {}
        self.reports = 0

    def record(self, node_id: str, series: Iterable[tuple[SeriesKey, Mapping[str, int]]],
               report: bool = True) -> None:
        """``report`` False: counted on the node's behalf by the control plane (its access
        log), so not a sign of life of the node's agent."""
        now = self._clock()
        index = int(now // self.slot_s)
        if not self._slots or self._slots[-1][0] != index:
            self._slots.append((index, {}))
            self._expire(index)
        slot = self._slots[-1][1]
        for key, values in series:
            counters = {k: v for k, v in values.items() if k not in GAUGES}
            gauges = {k: v for k, v in values.items() if k in GAUGES}
            if counters:
                add_into(slot.setdefault((node_id, key), {}), counters)
            if gauges:
                self._gauges.setdefault((node_id, key), {}).update(gauges)
        if report:
            self._last_report[node_id] = now
            self.reports += 1

    def forget(self, node_id: str) -> None:
        """A workload left: its gauges go (its counters age out of the windows)."""
        for key in [k for k in self._gauges if k[0] == node_id]:
            del self._gauges[key]
        self._last_report.pop(node_id, None)

    def report_age(self, node_id: str) -> float | None:
        """Seconds since ``node_id``'s agent last reported; None if it never did."""
        at = self._last_report.get(node_id)
        return None if at is None else self._clock() - at

    def window(self, seconds: float) -> Window:
        now = self._clock()
        seconds = min(max(seconds, self.slot_s), self.horizon_s)
        # A slot counts if it overlaps the window; the current, partial slot included.
        first = int((now - seconds) // self.slot_s)
        span = max(seconds, now - first * self.slot_s)
        counters: Sample = {}
        for index, sample in self._slots:
            if index < first:
                continue
            for key, values in sample.items():
                add_into(counters.setdefault(key, {}), values)
        ages = {node: now - at for node, at in self._last_report.items()}
        return Window(seconds, span, counters, dict(self._gauges), ages)

    def slots(self, seconds: float) -> list[tuple[float, float, Sample]]:
        """(seconds ago the slot started, slot length, counters) for the slots of the last
        ``seconds``, oldest first. The samples are the live ones: read, do not keep."""
        now = self._clock()
        first = int((now - seconds) // self.slot_s)
        return [(now - index * self.slot_s, self.slot_s, sample)
                for index, sample in self._slots if index >= first]

    def series_count(self) -> int:
        return sum(len(sample) for _, sample in self._slots) + len(self._gauges)

    def _expire(self, current: int) -> None:
        oldest = current - int(self.horizon_s // self.slot_s)
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()
