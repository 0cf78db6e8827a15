"""The hosts workloads run on, as the control plane sees them: does it reach every agent, and
does each host's clock agree with its own?

A host whose clock is off breaks what looks unrelated: certificates "not yet valid" or
"expired" on that host only, telemetry that lands in the wrong window. So `tulle check` asks
every agent for its clock (``GET /clock``) and compares, the way NTP does: the agent's time
against the middle of the exchange, give or take half its round trip.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tulle.controlplane.agents import Agents, PageRead
from tulle.model.workload import THIS_HOST, Workload

CONCURRENCY = 32
TIMEOUT_S = 2.0
DEADLINE_S = 4.0


@dataclass(frozen=True)
class AgentClock:
    node_id: str
    offset_s: float | None  # the agent's clock minus ours; None: no answer
    uncertainty_s: float  # half the round trip
    error: str | None = None


def agent_clock(read: PageRead) -> AgentClock:
    """One agent's offset from its answer to ``GET /clock``, timed by the caller."""
    if read.body is None or read.sent_at is None or read.answered_at is None:
        return AgentClock(read.node_id, None, 0.0, read.error or "no answer")
    try:
        their = float(json.loads(read.body)["time"])
    except (ValueError, KeyError, TypeError):
        return AgentClock(read.node_id, None, 0.0,
                          "its agent does not tell its clock (an older tulle?)")
    middle = (read.sent_at + read.answered_at) / 2
    return AgentClock(read.node_id, their - middle, (read.answered_at - read.sent_at) / 2)


def hosts_report(workloads: Iterable[Workload], clocks: Mapping[str, AgentClock],
                 silent_for: Callable[[str], float | None] = lambda node_id: None
                 ) -> dict[str, Any]:
    """Per host: its workloads, the agents that did not answer (with how long nothing was
    heard from them: ``silent_for``, seconds since the last report), and its clock's offset
    (the median of its agents', with the largest uncertainty among them)."""
    by_host: dict[str, list[Workload]] = {}
    for workload in workloads:
        by_host.setdefault(workload.host, []).append(workload)
    hosts = []
    for host, members in sorted(by_host.items()):
        answered = [c for w in members if (c := clocks.get(w.node_id)) is not None
                    and c.offset_s is not None]
        silent = [{"node": w.node_id, "why": (clocks[w.node_id].error if w.node_id in clocks
                                              else "not asked"),
                   "silentSeconds": _rounded(silent_for(w.node_id))}
                  for w in members if w.node_id not in {c.node_id for c in answered}]
        hosts.append({
            "host": host, "remote": host != THIS_HOST,
            "workloads": sorted(w.node_id for w in members),
            "answered": len(answered), "notAnswering": silent,
            "clockOffsetSeconds": (round(statistics.median(c.offset_s for c in answered
                                                            if c.offset_s is not None), 3)
                                   if answered else None),
            "uncertaintySeconds": (round(max(c.uncertainty_s for c in answered), 3)
                                   if answered else None),
        })
    return {"hosts": hosts}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


class HostSurvey:
    """Asks every registered workload's agent for its clock, at once. ``silent_for``: seconds
    since a node's agent last reported (None: never)."""

    def __init__(self, workloads: Callable[[], list[Workload]], agents: Agents,
                 silent_for: Callable[[str], float | None] = lambda node_id: None) -> None:
        self._workloads = workloads
        self._agents = agents
        self._silent_for = silent_for

    async def survey(self) -> dict[str, Any]:
        workloads = self._workloads()
        reads = await self._agents.read_all(
            [w.node_id for w in workloads], "/clock", {}, concurrency=CONCURRENCY,
            timeout_s=TIMEOUT_S, deadline_s=DEADLINE_S)
        clocks = {node: agent_clock(read) for node, read in reads.items()}
        return hosts_report(workloads, clocks, self._silent_for)
