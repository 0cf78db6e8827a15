"""What telemetry collection costs the control plane, per 100 proxies.

100 synthetic agents register (real sessions), then report every 5 s, as agents do, for the
measured period: each report carries the series a busy sidecar sends (its inbound side, calls
to three services, two route rules and the proxy's gauges). The figure is the control plane's
CPU time over the period divided by its length, in percent of one core. Baseline, same run and
same 100 sessions: the control plane's CPU over an equal period without reports.

Target (issue 5): at most 5 % of one core per 100 proxies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from benchmarks.harness import Figure, bench_mesh
from tulle.agent.session import ControlPlaneSession
from tulle.settings import ControlPlaneEndpoint, StatePaths, read_token

TARGET_PERCENT = 5.0
PROXIES = 100
INTERVAL_S = 5.0


def _report(i: int, services: int = 50) -> dict[str, Any]:
    latency = {"lat4": 40 + i % 7, "lat5": 30, "lat6": 12, "lat9": 3, "latsum": 700}
    traffic = {"rq2": 85 + i % 5, "rq4": 2, "rq5": 1, **latency, "rx": 42_000, "tx": 170_000}
    series = [{"k": "in", "v": {**traffic, "cxt": 3, "cx": 8}}]
    for peer in range(3):
        series.append({"k": "out", "dst": f"svc-{(i + peer) % services}.default",
                       "v": {**traffic, "retry": 1, "cx": 4, "healthy": 3, "members": 3}})
    for rule in ("0", "search"):
        series.append({"k": "route", "dst": f"svc-{i % 50}.default", "route": "default/r",
                       "rule": rule, "v": traffic})
    series.append({"k": "proxy", "v": {"mem": 9_000_000 + i, "stats": 412, "uptime": 100 + i}})
    return {"interval": INTERVAL_S, "series": series}


async def _sessions(paths: StatePaths, count: int) -> list[ControlPlaneSession]:
    endpoint = ControlPlaneEndpoint.load(paths)
    token = read_token(paths)
    sessions = []
    for i in range(count):
        session = ControlPlaneSession(endpoint.host, endpoint.api_port, token, {
            "name": f"bench-{i}", "namespace": "default", "service": f"svc-{i % 50}",
            "version": "", "labels": {}, "address": "127.0.0.1", "appPort": 20000 + i,
            "inboundPort": 30000 + i, "outboundPort": 40000 + i,
            "agentPort": 60000 + i, "upstreams": [], "xdsProtocol": "delta", "pid": 1,
            "xdsToken": f"bench-xds-token-{i:08}", "agentToken": f"bench-agent-token-{i:08}",
            "serviceAccount": ""})
        await session.open()
        sessions.append(session)
    return sessions


async def _measure(paths: StatePaths, cp: psutil.Process, seconds: float,
                   rounds_per_interval: float) -> tuple[float, float]:
    sessions = await _sessions(paths, PROXIES)
    try:
        await asyncio.sleep(1.0)  # let registration settle
        idle = await _cpu_over(cp, seconds, None)
        busy = await _cpu_over(cp, seconds, sessions, rounds_per_interval)
    finally:
        for session in sessions:
            await session.close()
    return idle, busy


async def _cpu_over(cp: psutil.Process, seconds: float,
                    sessions: list[ControlPlaneSession] | None,
                    rounds_per_interval: float = 1.0) -> float:
    """Percent of one core the control plane used over ``seconds``; with sessions, each
    reports ``rounds_per_interval`` times per 5 s, spread evenly."""
    before = cp.cpu_times()
    started = time.monotonic()
    if sessions:
        gap = INTERVAL_S / rounds_per_interval / len(sessions)
        sent = 0
        while time.monotonic() - started < seconds:
            session = sessions[sent % len(sessions)]
            if not await session.send_telemetry(_report(sent)):
                raise RuntimeError("a telemetry report was refused")
            sent += 1
            target = started + sent * gap
            await asyncio.sleep(max(0.0, target - time.monotonic()))
    else:
        await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    after = cp.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / elapsed


def run(quick: bool) -> tuple[list[Figure], str]:
    seconds = 5.0 if quick else 30.0
    with bench_mesh() as mesh:
        paths = StatePaths(mesh.state)
        cp = next(p for p in psutil.process_iter(["cmdline"])
                  if "tulle.controlplane" in " ".join(p.info["cmdline"] or ())
                  and str(mesh.state) in " ".join(p.info["cmdline"] or ()))
        idle, busy = asyncio.run(_measure(paths, cp, seconds, 1.0))
    figures = [
        Figure(f"control-plane CPU, {PROXIES} proxies reporting every 5 s", busy, "%",
               idle, TARGET_PERCENT),
    ]
    return figures, (f"{seconds:g} s each; baseline: the same {PROXIES} sessions, no reports; "
                     f"% of one core")
