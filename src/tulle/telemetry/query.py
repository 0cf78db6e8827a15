"""Golden metrics from a window: per workload, service, route rule and edge.

Success rate counts 5xx as failures (4xx are the caller's problem, not the service's).

Failures count against the service called, as its callers saw them: a caller that got 503
"no healthy upstream" or a connect failure never reached an instance, so the instances'
inbound side saw nothing. A service's figures are therefore its callers' view of it (their
outbound series, summed) whenever that view holds more requests (or as many, with more
failures) than its instances' inbound view; else the inbound view, which also counts callers
outside the mesh. One or the other, never their sum: a request that reached an instance is in
both.
Latency percentiles are interpolated within tulle's fixed buckets, so they are estimates
whose error is at most the width of the bucket they fall in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tulle.telemetry.schema import (
    AUTHZ,
    AUTHZ_DENIED,
    AUTHZ_WOULD_DENY,
    EGRESS,
    EGRESS_AUTHZ,
    INBOUND,
    INBOUND_PLAINTEXT,
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    LISTENERS_STOPPED,
    OUTBOUND,
    PASSTHROUGH,
    PROXY,
    REFUSED,
    REQUEST_FIELDS,
    RESTARTS,
    ROUTE,
    SERVER_STATE,
    TRIAL,
    TRIAL_SKIPPED,
    TRIAL_TO,
    UPGRADE_BOUNDS_S,
    UPGRADE_DURATION_FIELDS,
    UPGRADE_DURATION_SUM,
    UPGRADE_RX,
    UPGRADE_TX,
    UPGRADES,
    UPGRADES_ACTIVE,
    SeriesKey,
)
from tulle.telemetry.windows import Values, Window, add_into

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass(frozen=True)
class NodeInfo:
    """Who a reporting sidecar is."""

    name: str
    namespace: str
    service: str
    identity: str  # SPIFFE ID, or "" without a CA


def quantile(values: Mapping[str, int], q: float,
             bounds: tuple[float, ...] = LATENCY_BOUNDS_MS,
             fields: tuple[str, ...] = LATENCY_FIELDS) -> float | None:
    """The ``q`` quantile of a histogram over ``bounds`` (latencies in ms by default)."""
    counts = [values.get(name, 0) for name in fields]
    total = sum(counts)
    if not total:
        return None
    target = q * total
    seen = 0
    lower = 0.0
    for count, upper in zip(counts, (*bounds, None), strict=True):
        if upper is None:
            return bounds[-1]  # slower than the last bound: report the bound
        if count and seen + count >= target:
            return round(lower + (upper - lower) * (target - seen) / count, 3)
        seen += count
        lower = upper
    return bounds[-1]


def golden(values: Mapping[str, int], seconds: float) -> dict[str, Any]:
    requests = sum(values.get(name, 0) for name in REQUEST_FIELDS)
    failures = values.get("rq5", 0)
    return {
        "requests": requests,
        "rps": round(requests / seconds, 3),
        "successRate": round((requests - failures) / requests, 4) if requests else None,
        "codes": {f"{i}xx": values.get(f"rq{i}", 0) for i in range(1, 6)
                  if values.get(f"rq{i}", 0)},
        "latencyMs": {name: quantile(values, q) for name, q in QUANTILES},
        "bytesInPerSecond": round(values.get("rx", 0) / seconds, 1),
        "bytesOutPerSecond": round(values.get("tx", 0) / seconds, 1),
    }


def upgrades(inbound: Mapping[str, int], active: int) -> dict[str, Any]:
    """Upgraded connections (WebSocket) the instances carried in the window: opened, open now
    (``active``, a gauge), bytes each way, and the durations of those that closed (seconds,
    estimated within fixed buckets)."""
    closed = sum(inbound.get(name, 0) for name in UPGRADE_DURATION_FIELDS)
    mean = round(inbound.get(UPGRADE_DURATION_SUM, 0) / 1000 / closed, 3) if closed else None
    return {"opened": inbound.get(UPGRADES, 0), "active": active, "closed": closed,
            "bytesIn": inbound.get(UPGRADE_RX, 0), "bytesOut": inbound.get(UPGRADE_TX, 0),
            "durationSeconds": {
                "mean": mean,
                **{name: quantile(inbound, q, UPGRADE_BOUNDS_S, UPGRADE_DURATION_FIELDS)
                   for name, q in QUANTILES}}}


def connections(inbound: Mapping[str, int], callers: Mapping[str, int]) -> dict[str, Any]:
    """Connection-level figures of the window, what a tcp service has instead of requests:
    connections the instances accepted from callers and the bytes each way (received,
    sent), and every failed attempt on the path: callers to an instance's sidecar, a
    sidecar to its application."""
    return {"opened": inbound.get("cxt", 0), "bytesIn": inbound.get("rx", 0),
            "bytesOut": inbound.get("tx", 0),
            "connectFailures": callers.get("cfail", 0) + callers.get("ctimeout", 0)
            + inbound.get("app_cfail", 0)}


# Error counters of a caller's calls to a service (OUTBOUND fields), in the order `edges`
# shows them: how requests failed before, or instead of, an application's answer.
EDGE_ERRORS: tuple[str, ...] = (
    "no_healthy", "cfail", "ctimeout", "overflow", "cx_overflow", "timeout", "try_timeout",
    "reset", "retry", "retry_exhausted", "retry_overflow", "eject", "tls_err", "san_fail",
    "verify_fail", "refused")


def requests_of(values: Mapping[str, int]) -> int:
    return sum(values.get(name, 0) for name in REQUEST_FIELDS)


def seen_by(inbound: Mapping[str, int], callers: Mapping[str, int]) -> str:
    """Whose view of a service counts: "callers" when theirs holds more requests, or as many
    with more failures (requests that never reached an instance, or failed on the way);
    else "instances"."""
    view = (requests_of(callers), callers.get("rq5", 0))
    return "callers" if view > (requests_of(inbound), inbound.get("rq5", 0)) else "instances"


def errors_of(values: Mapping[str, int]) -> dict[str, int]:
    """The failures of a caller's view, for an ERRORS column: the 5xx answers, then the
    mesh's error counters that explain them."""
    errors = {"5xx": values["rq5"]} if values.get("rq5") else {}
    errors.update({k: values[k] for k in EDGE_ERRORS if values.get(k)})
    return errors


def connected(values: Mapping[str, int]) -> bool:
    """Whether a caller's calls to a service reached it at all in the window: False when
    every request failed (5xx) with no connection opened, as with no healthy endpoint, so
    that no mTLS (or plaintext) is claimed for a hop that never happened."""
    requests = requests_of(values)
    return bool(values.get("cxt")) or not requests or values.get("rq5", 0) < requests


def callers_of(window: Window, destination: str) -> Values:
    """Every caller's calls to ``destination`` ("name.namespace"), summed."""
    total: Values = {}
    for (_, key), values in window.counters.items():
        if key.kind == OUTBOUND and key.destination == destination:
            add_into(total, values)
    return total


def _sum(window: Window, nodes: Iterable[str], kinds: Iterable[str]) -> Values:
    wanted_nodes = set(nodes)
    wanted_kinds = set(kinds)
    total: Values = {}
    for (node, key), values in window.counters.items():
        if node in wanted_nodes and key.kind in wanted_kinds:
            add_into(total, values)
    return total


def _gauge(window: Window, nodes: Iterable[str], kinds: Iterable[str], name: str) -> int:
    wanted_nodes = set(nodes)
    return sum(values.get(name, 0) for (node, key), values in window.gauges.items()
               if node in wanted_nodes and key.kind in kinds)


def workload_rows(window: Window, nodes: Mapping[str, NodeInfo]) -> list[dict[str, Any]]:
    rows = []
    for node, info in sorted(nodes.items(), key=lambda item: (item[1].namespace, item[0])):
        inbound = _sum(window, [node], [INBOUND, INBOUND_PLAINTEXT])
        proxy = window.gauges.get((node, SeriesKey(PROXY)), {})
        rows.append({
            "namespace": info.namespace, "name": info.name, "service": info.service,
            "identity": info.identity,
            **golden(inbound, window.span),
            "connections": _gauge(window, [node], [INBOUND, INBOUND_PLAINTEXT], "cx"),
            "upgrades": upgrades(inbound, _gauge(window, [node], [INBOUND],
                                                 UPGRADES_ACTIVE)),
            "proxy": {"memoryBytes": proxy.get("mem"), "stats": proxy.get("stats"),
                      "lastReportSeconds": _age(window, node),
                      "serverState": proxy.get(SERVER_STATE),
                      "listenersStopped": proxy.get(LISTENERS_STOPPED, 0),
                      "restarts": window.counters.get((node, SeriesKey(PROXY)), {}).get(
                          RESTARTS, 0)},
        })
    return rows


def service_rows(window: Window, nodes: Mapping[str, NodeInfo],
                 services: Iterable[tuple[str, str]],
                 subsets: Mapping[tuple[str, str], Iterable[str]] | None = None
                 ) -> list[dict[str, Any]]:
    """``services``: (namespace, name) of every service to show, traffic or not. Each row's
    figures are the view that saw more (see the module's docstring); ``seenBy`` says which.
    ``subsets``: (namespace, name) -> the "name.namespace" of its subsets (versions), whose
    callers call the service too (a canary route sends them there)."""
    rows = []
    for namespace, name in sorted(services):
        members = [node for node, info in nodes.items()
                   if info.namespace == namespace and info.service == name]
        inbound = _sum(window, members, [INBOUND, INBOUND_PLAINTEXT])
        callers = callers_of(window, f"{name}.{namespace}")
        for subset in (subsets or {}).get((namespace, name), ()):
            add_into(callers, callers_of(window, subset))
        view = seen_by(inbound, callers)
        rows.append({"namespace": namespace, "name": name, "instances": len(members),
                     **golden(callers if view == "callers" else inbound, window.span),
                     "seenBy": view, "errors": errors_of(callers),
                     "connections": _gauge(window, members, [INBOUND, INBOUND_PLAINTEXT],
                                           "cx"),
                     "l4": connections(inbound, callers),
                     "upgrades": upgrades(inbound, _gauge(window, members, [INBOUND],
                                                          UPGRADES_ACTIVE)),
                     "authorization": authorization(window, members, inbound),
                     # Service-wide rate limits: refused (429), and would refuse (dry run).
                     "rateLimit": {"limited": inbound.get("limited", 0),
                                   "wouldLimit": inbound.get("would_limit", 0)},
                     "routeTrial": route_trial(window, f"{name}.{namespace}")})
    return rows


def egress_authorization(window: Window, hosts: Mapping[str, str]) -> list[dict[str, Any]]:
    """What AuthorizationPolicies on ExternalServices denied in the window, and would deny
    (dry run), per host and RBAC policy, with the callers whose own sidecars decided.
    ``hosts``: the host each RBAC policy ID guards (model.egress_authz.policy_hosts)."""
    by_policy: dict[str, Values] = {}
    callers: dict[str, set[str]] = {}
    for (node, key), values in window.counters.items():
        if key.kind == EGRESS_AUTHZ and (values.get(AUTHZ_DENIED) or
                                         values.get(AUTHZ_WOULD_DENY)):
            add_into(by_policy.setdefault(key.rule, {}), values)
            callers.setdefault(key.rule, set()).add(node)
    return [{"host": hosts.get(policy, "?"), "policy": policy,
             "denied": values.get(AUTHZ_DENIED, 0), "wouldDeny": values.get(AUTHZ_WOULD_DENY, 0),
             "callers": sorted(callers[policy])}
            for policy, values in sorted(by_policy.items(),
                                         key=lambda item: (hosts.get(item[0], "?"), item[0]))]


def route_trial(window: Window, destination: str) -> dict[str, Any] | None:
    """Where callers' requests to ``destination`` would have gone with its DryRun HTTPRoutes
    in force (TRIAL series), by the rule that would have taken them; None: no trial seen."""
    by_rule: dict[tuple[str, str], Values] = {}
    skipped = 0
    for (_, key), values in window.counters.items():
        if key.kind == TRIAL and key.destination == destination:
            if key.rule == TRIAL_SKIPPED:
                skipped += values.get("rq", 0)
            else:
                add_into(by_rule.setdefault((key.route, key.rule), {}), values)
    if not by_rule and not skipped:
        return None
    rules = [{"route": route, "rule": rule, "requests": values.get("rq", 0),
              "moved": values.get("moved", 0),
              "to": {k.removeprefix(TRIAL_TO): v for k, v in sorted(values.items())
                     if k.startswith(TRIAL_TO)}}
             for (route, rule), values in sorted(by_rule.items())]
    # Requests the control plane did not decide (past its budget): the rest are a sample.
    return {"requests": sum(r["requests"] for r in rules),
            "moved": sum(r["moved"] for r in rules), "notEvaluated": skipped, "rules": rules}


def authorization(window: Window, members: Iterable[str], inbound: Mapping[str, int]
                  ) -> dict[str, Any]:
    """What the instances' AuthorizationPolicies denied in the window, and would deny (dry
    run), in all and per RBAC policy (each DENY rule, "no ALLOW rule matched", a default)."""
    wanted = set(members)
    by_policy: dict[str, Values] = {}
    for (node, key), values in window.counters.items():
        if node in wanted and key.kind == AUTHZ:
            add_into(by_policy.setdefault(key.rule, {}), values)
    return {"denied": inbound.get("authz_denied", 0),
            "wouldDeny": inbound.get("authz_would_deny", 0),
            "policies": [{"policy": policy, "denied": values.get(AUTHZ_DENIED, 0),
                          "wouldDeny": values.get(AUTHZ_WOULD_DENY, 0)}
                         for policy, values in sorted(by_policy.items())
                         if values.get(AUTHZ_DENIED, 0) or values.get(AUTHZ_WOULD_DENY, 0)]}


def route_rows(window: Window, destination: str,
               rules: Iterable[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Per-rule metrics for calls to ``destination`` ("name.namespace"), summed over callers.
    ``rules``: (route "namespace/name", rule key as reported, a description of its matches),
    in match order. Without rules, the service's single default route is its edge traffic."""
    rules = list(rules)
    rows = []
    if not rules:
        edge = callers_of(window, destination)
        return [{"route": "(default)", "rule": "", "matches": "every request",
                 **golden(edge, window.span), "retries": edge.get("retry", 0),
                 "timeouts": edge.get("timeout", 0), "errors": errors_of(edge)}]
    for route, rule, matches in rules:
        total: Values = {}
        for (_, key), values in window.counters.items():
            if key.kind == ROUTE and key.destination == destination and \
                    key.route == route and key.rule == rule:
                add_into(total, values)
        rows.append({"route": route, "rule": rule, "matches": matches,
                     **golden(total, window.span), "retries": total.get("retry", 0),
                     "timeouts": total.get("timeout", 0), "errors": errors_of(total),
                     # What the rule's rate limit in dry run would have refused (429).
                     "wouldLimit": total.get("would_limit", 0)})
    return rows


def edge_rows(window: Window, nodes: Mapping[str, NodeInfo],
              identities: Mapping[str, tuple[str, ...]], mtls: bool) -> list[dict[str, Any]]:
    """Who calls whom, hosts outside the mesh included. ``identities``: "name.namespace" ->
    the service's SPIFFE IDs."""
    rows = []
    for (node, key), values in sorted(window.counters.items()):
        if key.kind not in (OUTBOUND, INBOUND_PLAINTEXT, EGRESS, REFUSED):
            continue
        info = nodes.get(node)
        if key.kind in (EGRESS, REFUSED):  # out of the mesh: no sidecar, no mesh identity
            source = _who(node, info)
            destination = _outside(key.destination) if key.kind == EGRESS else {
                "external": True, "host": key.destination, "port": None, "passthrough": False,
                "refused": True, "identities": []}
            secured = False
        elif key.kind == OUTBOUND:
            name, _, namespace = key.destination.partition(".")
            source = _who(node, info)
            destination = {"service": name, "namespace": namespace,
                           "identities": list(identities.get(key.destination, ()))}
            secured = mtls
        else:  # plaintext callers of a PERMISSIVE service: not in the mesh
            source = {"workload": None, "namespace": None, "service": None,
                      "identity": None, "outsideMesh": True}
            destination = {"service": info.service if info else "", "namespace":
                           info.namespace if info else "", "workload": info.name if info else
                           node, "identities": [info.identity] if info else []}
            secured = False
        stats = golden(values, window.span)
        # Connections refused before any was made (a tcp service's callers through a TCP
        # proxy, with no healthy instance) are an edge too: its errors say why.
        if not stats["requests"] and not values.get("cxt") and not values.get("no_healthy"):
            continue
        rows.append({"source": source, "destination": destination, "mtls": secured,
                     "connected": connected(values), **stats, "errors": errors_of(values)})
    return rows


def _outside(destination: str) -> dict[str, Any]:
    """An egress edge's destination: an ExternalService's host and port, or (ALLOW_ANY) any
    host passed through, which the sidecar's stats do not tell apart (its access log does)."""
    if destination == PASSTHROUGH:
        return {"external": True, "host": None, "port": None, "passthrough": True,
                "identities": []}
    host, _, port = destination.rpartition(":")
    return {"external": True, "host": host, "port": int(port), "passthrough": False,
            "identities": []}


def _who(node: str, info: NodeInfo | None) -> dict[str, Any]:
    if info is None:
        name, _, namespace = node.partition(".")
        return {"workload": name, "namespace": namespace, "service": None, "identity": None}
    return {"workload": info.name, "namespace": info.namespace, "service": info.service,
            "identity": info.identity or None}


def _age(window: Window, node: str) -> float | None:
    age = window.last_report_age.get(node)
    return None if age is None else round(age, 1)
