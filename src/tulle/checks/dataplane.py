"""Check functions for the proxies, their telemetry and the traffic between them (`--proxy`).
The decisions are in the pure evaluators (``certificates``, ``traffic``); these functions
fetch, call them and phrase the outcome."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

from tulle.checks import certificates as certs
from tulle.checks import traffic
from tulle.checks.client import CheckApi
from tulle.checks.runner import Outcome
from tulle.errors import TulleError
from tulle.xds.sync import ProxySync, SyncState

REPORT_INTERVAL_S = 5.0
MAX_REPORT_AGE_S = 3 * REPORT_INTERVAL_S
TRAFFIC_WINDOW_S = 60.0


def _node(workload: dict[str, Any]) -> str:
    return f"{workload['name']}.{workload['namespace']}"


def _lines(items: list[str], limit: int = 20) -> str:
    shown = items[:limit]
    more = len(items) - len(shown)
    return "\n".join(shown + ([f"... and {more} more"] if more > 0 else []))


# -- proxies -----------------------------------------------------------------------------------

def connected(api: CheckApi) -> Outcome:
    workloads = api.workloads()
    missing = [f"{_node(w)}: " + ("agent and proxy not connected" if not w["agentConnected"]
                                   else "proxy not connected to xDS")
               for w in workloads if not (w["agentConnected"] and w["proxyConnected"])]
    if missing:
        return Outcome.failed(_lines(missing), notConnected=[m.partition(":")[0]
                                                           for m in missing])
    return Outcome.ok(f"{len(workloads)} proxies connected", proxies=len(workloads))


def synced(api: CheckApi) -> Outcome:
    return evaluate_sync(api.proxies(), time.time())


def evaluate_sync(proxies: Iterable[ProxySync], now: float) -> Outcome:
    """Every type of every proxy SYNCED. A PENDING push is retried until the check's deadline;
    NACKED and STALE do not go away by waiting: they settle the check at once."""
    problems: list[str] = []
    nodes: list[str] = []
    in_flight = False
    for proxy in proxies:
        for kind in proxy.types:
            if kind.state in (SyncState.SYNCED, SyncState.NOT_SENT):
                continue
            problems.append(f"{proxy.node}: {kind.type} {kind.state.label} "
                            f"({kind.describe(now)})")
            nodes.append(proxy.node)
            in_flight = in_flight or kind.state is SyncState.PENDING
    if problems:
        return Outcome.failed(_lines(problems) + "\n(`tulle proxy-status` shows each type)",
                              settled=not in_flight, proxies=sorted(set(nodes)))
    return Outcome.ok(f"every type of every proxy is {SyncState.SYNCED.label}")


def certificates(api: CheckApi) -> Outcome:
    identity = api.identity()
    anchors = [c for a in identity["anchors"] for c in certs.load(a["pem"])]
    now = dt.datetime.now(dt.UTC)
    failures: list[str] = []
    warnings: list[str] = []
    checked = 0
    for workload in api.workloads():
        if not workload["proxyConnected"]:
            continue  # proxies-connected reports it
        node = _node(workload)
        try:
            dump = api.admin(node, "config_dump", {"resource": "dynamic_active_secrets"})
        except TulleError as exc:
            failures.append(f"{node}: cannot read its secrets: {exc.message}")
            continue
        pem = certs.serving_chain_pem(dump)
        if pem is None:
            failures.append(f"{node}: has no serving certificate")
            continue
        bad, weak = certs.leaf_problems(certs.load(pem), anchors, now)
        failures += [f"{node}: {p}" for p in bad]
        warnings += [f"{node}: {w}" for w in weak]
        checked += 1
    if failures:
        return Outcome.failed(_lines(failures + warnings))
    if warnings:
        return Outcome.warning(_lines(warnings))
    return Outcome.ok(f"{checked} serving certificates valid and chained to the trust bundle")


def versions(api: CheckApi) -> Outcome:
    expected = api.versions().get("envoy")
    found: dict[str, str] = {}
    for workload in api.workloads():
        if workload["proxyConnected"]:
            info = api.admin(_node(workload), "server_info")
            found[_node(workload)] = envoy_version(str(info.get("version", "")))
    return evaluate_versions(found, expected)


def agent_versions(api: CheckApi) -> Outcome:
    expected = str(api.versions().get("controlPlane", ""))
    found = {_node(w): str(w.get("agentVersion") or "") for w in api.workloads()}
    return evaluate_agent_versions(found, expected)


def evaluate_agent_versions(found: dict[str, str], expected: str) -> Outcome:
    """Every agent should run the control plane's tulle version ("" : not reported, an agent
    older than the report)."""
    other = {node: version or "unknown" for node, version in found.items()
             if version != expected}
    if other:
        return Outcome.failed("agents on another tulle version than the control plane ("
                              f"{expected}): " + ", ".join(f"{node} {version}" for node, version
                                                            in sorted(other.items())),
                              agents=found, expected=expected)
    return Outcome.ok(f"{len(found)} agents run tulle {expected}", agents=found,
                      expected=expected)


def envoy_version(build: str) -> str:
    """'9e55.../1.40.0/Clean/RELEASE/BoringSSL' -> '1.40.0'."""
    parts = build.split("/")
    return parts[1] if len(parts) > 1 else build


def evaluate_versions(found: dict[str, str], expected: str | None) -> Outcome:
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        by_version = {v: sorted(n for n, x in found.items() if x == v) for v in distinct}
        return Outcome.failed("proxies run different Envoy versions: " + "; ".join(
            f"{v}: {', '.join(nodes)}" for v, nodes in by_version.items()), envoy=found)
    if expected and distinct and distinct[0] != expected:
        return Outcome.failed(f"proxies run Envoy {distinct[0]}; the control plane expects "
                              f"{expected}", envoy=found, expected=expected)
    if not distinct:
        return Outcome.ok("no proxies connected", envoy=found, expected=expected)
    return Outcome.ok(f"Envoy {distinct[0]} on {len(found)} proxies", envoy=found,
                      expected=expected)


# -- telemetry ---------------------------------------------------------------------------------

def reports_flowing(api: CheckApi) -> Outcome:
    rows = api.telemetry_workloads(TRAFFIC_WINDOW_S)
    nodes = [_node(w) for w in api.workloads() if w["agentConnected"]]
    silent = traffic.silent_proxies(rows, nodes, MAX_REPORT_AGE_S)
    if silent:
        return Outcome.failed(_lines([
            f"{s['proxy']}: " + ("never reported" if s["lastReportSeconds"] is None else
                                 f"last report {s['lastReportSeconds']:.0f}s ago")
            for s in silent]), silent=silent)
    return Outcome.ok(f"{len(nodes)} proxies reported in the last {MAX_REPORT_AGE_S:.0f}s")


# -- traffic -----------------------------------------------------------------------------------

def endpoints(api: CheckApi) -> Outcome:
    edge_rows = api.edges(TRAFFIC_WINDOW_S)["edges"]
    missing = traffic.services_without_endpoints(api.services(), edge_rows)
    if missing:
        return Outcome.failed(_lines([
            f"{m['service']}.{m['namespace']}: {m['reason']}, called by "
            f"{', '.join(m['callers'])}; see `tulle diagnose {m['service']}`"
            for m in missing]), services=missing)
    return Outcome.ok(f"{len(edge_rows)} edges checked")


def edges(api: CheckApi) -> Outcome:
    data = api.edges(TRAFFIC_WINDOW_S)
    nodes_of: dict[str, list[str]] = {}
    for workload in api.workloads():
        nodes_of.setdefault(f"{workload['service']}.{workload['namespace']}", []).append(
            _node(workload))
    failing = traffic.failing_edges(data["edges"], data["inbound"], nodes_of)
    refused = traffic.proxy_failures(data.get("proxies", [])) + \
        traffic.refused_handshakes(data["inbound"]) + traffic.refused_peers(data["edges"])
    if failing or refused:
        return Outcome.failed(_lines([f.describe() for f in failing] + [
            f"{r['proxy']}: {r['count']} {r['kind']}; see `tulle diagnose`" for r in refused]),
            edges=[f.to_dict() for f in failing], proxies=refused)
    return Outcome.ok(f"{len(data['edges'])} edges, none failing in the last "
                      f"{TRAFFIC_WINDOW_S:.0f}s")


def sidecars_serving(api: CheckApi) -> Outcome:
    rows = api.telemetry_workloads(TRAFFIC_WINDOW_S)
    registered = [_node(w) for w in api.workloads()]
    broken = traffic.sidecars_not_serving(rows, registered)
    if broken:
        return Outcome.failed(_lines([f"{b['proxy']}: {b['what']} ({b['code']}; see "
                                      "`tulle diagnose`)" for b in broken]), proxies=broken)
    return Outcome.ok(f"{len(registered)} sidecars LIVE, every listener serving, no restarts "
                      f"in the last {TRAFFIC_WINDOW_S:.0f}s")


def proxy_resources(api: CheckApi) -> Outcome:
    rows = api.telemetry_workloads(TRAFFIC_WINDOW_S)
    outliers = traffic.resource_outliers(rows)
    if outliers:
        return Outcome.failed(_lines([
            f"{o['proxy']}: {o['what']} {o['value']:,} is far above the median of its "
            f"{o['peers']} peers ({o['median']:,.0f}); see `tulle diagnose`"
            for o in outliers]), proxies=outliers)
    return Outcome.ok(f"{len(rows)} proxies, none far above its peers in memory or stats")
