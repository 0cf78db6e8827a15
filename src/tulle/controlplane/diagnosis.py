"""The control-plane side of `tulle diagnose`: gather the evidence, run the rules.

``GET /v1/diagnose?service=&from=&to=&namespace=&window=`` answers
``{"scope", "windowSeconds", "findings": [...], "gathered": {...}, "ruleErrors": [...]}``.

Each sidecar's Envoy ``/clusters`` is read through its agent, all at once with a bound on
concurrency and a deadline per read and per run: a proxy that does not answer in time is
reported (TUL1015) instead of delaying the whole diagnosis.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from tulle.controlplane.agents import agent_target
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence, ProxyEvidence, TimeSlot, parse_clusters
from tulle.diagnose.model import Scope
from tulle.errors import UsageError

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

DEFAULT_WINDOW_S = 60.0
ADMIN_CONCURRENCY = 64
ADMIN_TIMEOUT_S = 3.0  # one proxy's /clusters
GATHER_DEADLINE_S = 20.0  # every proxy's, together
HISTORY_LIMIT = 50
TIMELINE_S = 600.0  # telemetry slots kept in the evidence: when did errors start?


def register(router: web.UrlDispatcher, cp: ControlPlane) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(await run(cp, request.query))

    router.add_get("/v1/diagnose", handler)


def parse_window(raw: str | None, horizon: float) -> float:
    text = (raw or "").strip()
    if not text:
        return DEFAULT_WINDOW_S
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError as exc:
        raise UsageError(f"--window must be a duration such as 30s or 5m, got {text!r}") \
            from exc
    if not 0 < seconds <= horizon:
        raise UsageError(f"--window must be between 1s and {horizon:g}s, got {text}",
                         hint="the control plane keeps the last 15 minutes of telemetry")
    return seconds


async def run(cp: ControlPlane, query: Any) -> dict[str, Any]:
    started = time.monotonic()
    scope = Scope(namespace=query.get("namespace") or None,
                  service=query.get("service") or None,
                  source=query.get("from") or None, destination=query.get("to") or None)
    seconds = parse_window(query.get("window"), cp.telemetry.windows.horizon_s)
    if cp.rebuild_pending:
        cp.rebuild_now()
    evidence = await gather(cp, seconds)
    result = diagnose(evidence, scope)
    return {
        "scope": scope.to_dict(),
        "windowSeconds": seconds,
        "findings": [f.to_dict() for f in result.findings],
        "ruleErrors": list(result.rule_errors),
        "gathered": {
            "meshVersion": evidence.mesh.version,
            "services": len(evidence.mesh.services),
            "workloads": len(evidence.mesh.workloads),
            "proxiesRead": sum(1 for p in evidence.proxies.values() if p.error is None),
            "proxiesFailed": sorted(n for n, p in evidence.proxies.items() if p.error),
            "seconds": round(time.monotonic() - started, 3),
        },
    }


async def gather(cp: ControlPlane, window_s: float) -> Evidence:
    mesh = cp.mesh
    proxies = await read_proxies(cp, mesh.workloads.keys())
    now = time.time()
    return Evidence(
        mesh=mesh,
        window=cp.telemetry.windows.window(window_s),
        nodes=MappingProxyType(dict(cp.telemetry.nodes)),
        proxies=MappingProxyType(proxies),
        xds=MappingProxyType({p.node: p for p in cp.hub.sync_views(now, mesh.workloads)}),
        nacks=tuple(cp.hub.nacks.entries()),
        identity=cp.identity.status(),
        history=tuple(cp.store.history(None, limit=HISTORY_LIMIT)),
        now=now,
        timeline=tuple(TimeSlot(now - ago, length, MappingProxyType(dict(sample)))
                       for ago, length, sample in cp.telemetry.windows.slots(TIMELINE_S)),
    )


async def read_proxies(cp: ControlPlane, nodes: Iterable[str]) -> dict[str, ProxyEvidence]:
    """Every named sidecar's endpoints, read in parallel through its agent."""
    nodes = sorted(nodes)
    limit = asyncio.Semaphore(ADMIN_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=ADMIN_CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as client:

        async def read(node: str) -> ProxyEvidence:
            async with limit:
                return await _read_clusters(cp, client, node)

        tasks = {node: asyncio.create_task(read(node)) for node in nodes}
        done, pending = await asyncio.wait(tasks.values(), timeout=GATHER_DEADLINE_S) \
            if tasks else (set(), set())
        for task in pending:
            task.cancel()
    out = {}
    for node, task in tasks.items():
        if task in done and task.exception() is None:
            out[node] = task.result()
        else:
            out[node] = ProxyEvidence(node, error="no answer within the diagnosis deadline")
    return out


async def _read_clusters(cp: ControlPlane, client: aiohttp.ClientSession,
                         node: str) -> ProxyEvidence:
    agent = agent_target(cp, node)
    if agent is None:
        return ProxyEvidence(node, error="not registered")
    try:
        async with client.get(agent.url("/admin/clusters"), params={"format": "json"},
                              headers=agent.headers) as response:
            body = await response.read()
            if response.status != 200:
                return ProxyEvidence(node, error=f"agent answered HTTP {response.status}: "
                                     f"{body[:200].decode(errors='replace').strip()}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return ProxyEvidence(node, error=f"agent did not answer: {type(exc).__name__} {exc}")
    try:
        clusters = parse_clusters(json.loads(body))
    except (ValueError, AttributeError, TypeError) as exc:
        return ProxyEvidence(node, error=f"unreadable /clusters: {exc}")
    return ProxyEvidence(node, MappingProxyType(clusters))
