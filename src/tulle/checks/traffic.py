"""Pure evaluators for the data plane, from telemetry rows: which services, edges and proxies
look unhealthy, and what kind of failure it is.

Failures count against the service called, as its callers saw them (as `tulle stat`,
`edges` and `diagnose` count them): a caller's 503 "no healthy upstream" or connect failure
fails the edge to that service even though no instance saw the request.

Edge rows come from ``GET /v1/health/edges``: per caller proxy and destination service, the
raw counters of the window (``rq1``..``rq5`` per status class, ``c503`` per code, ``cfail``
...), and the gauges last reported (``healthy``, ``members``). Inbound rows carry each
instance's own counters (``app_cfail``: its sidecar could not reach the application).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tulle.telemetry import outliers
from tulle.telemetry.query import requests_of

MIN_REQUESTS = 5  # below this an edge's failure rate means little
MAX_FAILURE_RATE = 0.05
# What a failing edge's counters say about the cause, most specific first:
# (counter, where it is counted, the words for it).
FAILURE_KINDS: tuple[tuple[str, str, str], ...] = (
    ("app_cfail", "destination", "connect failures to the application"),
    ("cfail", "edge", "connect failures"),
    ("ctimeout", "edge", "connect timeouts"),
    ("tls_err", "edge", "TLS errors"),
    ("san_fail", "edge", "TLS errors (wrong peer identity)"),
    ("verify_fail", "edge", "TLS errors (untrusted certificate)"),
    ("tls_err", "destination", "TLS errors at the destination"),
    ("verify_fail", "destination", "TLS errors (the destination does not trust the caller)"),
    ("no_cert", "destination", "TLS errors (callers without a client certificate)"),
    ("no_healthy", "edge", "no healthy endpoint"),
    ("overflow", "edge", "circuit-breaker overflows"),
    ("cx_overflow", "edge", "circuit-breaker overflows (connections)"),
    ("retry_overflow", "edge", "retry-budget overflows"),
    ("timeout", "edge", "timeouts"),
    ("c429", "edge", "rate-limited (429)"),
    ("limited", "destination", "rate-limited (429) by the destination"),
    ("eject", "edge", "outlier ejections"),
    ("c404", "edge", "not found (404)"),
    ("c503", "edge", "503 service unavailable"),
    ("rq5", "edge", "5xx responses"),
)
# Proxies whose memory or stats count is this many times the mesh's median, and above the
# floor, are far above normal.


@dataclass(frozen=True)
class EdgeFailure:
    source: str  # the caller's node id
    destination: str  # "name.namespace"
    requests: int
    failures: int
    kinds: tuple[str, ...]  # e.g. ("connect failures to the application", "5xx responses")

    @property
    def rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    def describe(self) -> str:
        service = self.destination.partition(".")[0]
        return (f"{self.source} -> {self.destination}: {self.failures} of {self.requests} "
                f"requests failed ({self.rate:.0%}): {', '.join(self.kinds) or 'unknown'}; "
                f"see `tulle diagnose {service}`")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination,
                "service": self.destination.partition(".")[0],
                "namespace": self.destination.partition(".")[2],
                "requests": self.requests, "failures": self.failures,
                "failureRate": round(self.rate, 4), "kinds": list(self.kinds)}


def failures_of(values: Mapping[str, int]) -> int:
    """Failed requests as the caller saw them: 5xx, and 429 (refused by a rate limit)."""
    return values.get("rq5", 0) + values.get("c429", 0)


def failure_kinds(edge: Mapping[str, int], destination: Mapping[str, int]) -> tuple[str, ...]:
    sources = {"edge": edge, "destination": destination}
    return tuple(words for counter, where, words in FAILURE_KINDS
                 if sources[where].get(counter, 0) > 0)


def failing_edges(edges: Iterable[Mapping[str, Any]], inbound: Iterable[Mapping[str, Any]],
                  nodes_of: Mapping[str, Sequence[str]]) -> list[EdgeFailure]:
    """Edges whose failure rate in the window is above MAX_FAILURE_RATE.

    ``inbound``: [{"node", "values"}]; ``nodes_of``: "name.namespace" of a service -> the
    node ids of its instances (their inbound counters explain a caller's 5xx)."""
    inbound_by_node = {str(row["node"]): row.get("values", {}) for row in inbound}
    out = []
    for edge in edges:
        values: Mapping[str, int] = edge.get("values", {})
        requests, failures = requests_of(values), failures_of(values)
        if requests < MIN_REQUESTS or failures / requests <= MAX_FAILURE_RATE:
            continue
        destination = str(edge["destination"])
        at_destination: dict[str, int] = {}
        for node in nodes_of.get(destination, ()):
            for key, value in inbound_by_node.get(node, {}).items():
                at_destination[key] = at_destination.get(key, 0) + value
        kinds = failure_kinds(values, at_destination)
        out.append(EdgeFailure(str(edge["source"]), destination, requests, failures, kinds))
    return sorted(out, key=lambda e: (-e.rate, e.source, e.destination))


# Handshakes an instance's inbound side refused: callers that are no edge at all (plaintext
# clients of a STRICT service, certificates from another CA). (counter, the words for it).
REFUSED_HANDSHAKES: tuple[tuple[str, str], ...] = (
    ("tls_err", "failed TLS handshakes (plaintext clients, or TLS errors)"),
    ("no_cert", "TLS handshakes without a client certificate (plaintext or non-mesh clients)"),
    ("verify_fail", "TLS handshakes with an untrusted or expired client certificate"),
    ("san_fail", "TLS handshakes from a caller with an unexpected identity"),
)


def refused_handshakes(inbound: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """[{"proxy", "count", "kind"}] for each instance's refused inbound handshakes."""
    out = []
    for row in inbound:
        values = row.get("values", {})
        for counter, words in REFUSED_HANDSHAKES:
            if values.get(counter, 0) > 0:
                out.append({"proxy": str(row["node"]), "count": int(values[counter]),
                            "kind": words})
    return sorted(out, key=lambda r: (r["proxy"], r["kind"]))


# Handshakes a caller's sidecar refused: the endpoint's certificate is not one it accepts.
# Retries may hide them from the request counts, so they count on their own.
REFUSED_PEERS: tuple[tuple[str, str], ...] = (
    ("san_fail", "TLS handshakes refused: the endpoint's identity is not the service's"),
    ("verify_fail", "TLS handshakes refused: the endpoint's certificate is not trusted"),
)


def refused_peers(edges: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """[{"proxy", "count", "kind"}] for callers that refused their destination's certificate;
    ``edges``: [{"source", "destination", "values"}]."""
    out = []
    for edge in edges:
        values = edge.get("values", {})
        for counter, words in REFUSED_PEERS:
            if values.get(counter, 0) > 0:
                out.append({"proxy": str(edge["source"]), "count": int(values[counter]),
                            "kind": f"{words} ({edge['destination']})"})
    return sorted(out, key=lambda r: (r["proxy"], r["kind"]))


# A sidecar's own counters (no destination): (counter, the words for it).
PROXY_FAILURE_KINDS: tuple[tuple[str, str], ...] = (
    ("noroute", "requests that matched no route (404)"),
    ("route_limited", "requests refused by a route's rate limit (429)"),
)


def proxy_failures(proxies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sidecars that answered at least MIN_REQUESTS requests themselves in the window because
    no route matched or a route's rate limit refused them. ``proxies``: [{"node", "values"}]."""
    out = []
    for row in proxies:
        values: Mapping[str, int] = row.get("values", {})
        for counter, words in PROXY_FAILURE_KINDS:
            count = values.get(counter, 0)
            if count >= MIN_REQUESTS:
                out.append({"proxy": str(row["node"]), "kind": words, "count": count})
    return out


def services_without_endpoints(services: Iterable[Mapping[str, Any]],
                               edges: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Services that were called in the window but have no ready endpoint now (or whose
    callers see no healthy endpoint: all ejected or failing health)."""
    known = {f"{s['name']}.{s['namespace']}": s for s in services}
    callers: dict[str, list[str]] = {}
    unhealthy: set[str] = set()
    for edge in edges:
        values: Mapping[str, int] = edge.get("values", {})
        if not requests_of(values) and not values.get("cxt"):
            continue
        destination = str(edge["destination"])
        callers.setdefault(destination, []).append(str(edge["source"]))
        gauges: Mapping[str, int] = edge.get("gauges", {})
        if gauges.get("members", 0) > 0 and gauges.get("healthy", 1) == 0:
            unhealthy.add(destination)
    out = []
    for destination, sources in sorted(callers.items()):
        service = known.get(destination)
        endpoints = len(service.get("endpoints", [])) if service else 0
        if endpoints and destination not in unhealthy:
            continue
        name, _, namespace = destination.partition(".")
        reason = ("no such service" if service is None else
                  "no ready instance" if not endpoints else "no healthy endpoint")
        out.append({"service": name, "namespace": namespace, "callers": sorted(set(sources)),
                    "instances": len(service.get("workloads", [])) if service else 0,
                    "reason": reason})
    return out


def resource_outliers(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Proxies whose memory or stats count is far above their peers' (the rule `tulle
    diagnose` uses too: tulle.telemetry.outliers).

    ``rows``: /v1/telemetry/workloads rows (``proxy.memoryBytes``, ``proxy.stats``)."""
    rows = list(rows)
    out = []
    for field, rule, label in (("memoryBytes", outliers.MEMORY, "memory"),
                               ("stats", outliers.STATS, "stats")):
        values = {f"{r['name']}.{r['namespace']}": int(r["proxy"][field]) for r in rows
                  if (r.get("proxy") or {}).get(field)}
        for found in outliers.far_above_peers(values, rule):
            out.append({"proxy": found.node, "what": label, "value": found.value,
                        "median": found.median, "peers": found.peers})
    return out


def sidecars_not_serving(rows: Iterable[Mapping[str, Any]],
                         registered: Iterable[str]) -> list[dict[str, Any]]:
    """Registered workloads whose Envoy stopped listeners, left LIVE or was restarted by its
    agent (the signals `tulle diagnose` reads for TUL1017 and TUL1018).

    ``rows``: /v1/telemetry/workloads rows (``proxy.listenersStopped``, ``serverState``,
    ``restarts``); ``registered``: node ids."""
    wanted = set(registered)
    out = []
    for row in rows:
        node = f"{row['name']}.{row['namespace']}"
        proxy = row.get("proxy") or {}
        if node not in wanted:
            continue
        stopped = int(proxy.get("listenersStopped") or 0)
        state = proxy.get("serverState")
        restarts = int(proxy.get("restarts") or 0)
        if stopped:
            out.append({"proxy": node, "what": f"{stopped} listener(s) stopped",
                        "code": "TUL1017"})
        if state not in (None, 0):
            out.append({"proxy": node, "what": f"Envoy server state {state}, not LIVE",
                        "code": "TUL1017"})
        if restarts:
            out.append({"proxy": node, "what": f"Envoy restarted {restarts} time(s)",
                        "code": "TUL1018"})
    return out


def silent_proxies(rows: Iterable[Mapping[str, Any]], connected: Iterable[str],
                   max_age_s: float) -> list[dict[str, Any]]:
    """Connected proxies that have not reported within ``max_age_s`` (or never)."""
    ages = {f"{r['name']}.{r['namespace']}": (r.get("proxy") or {}).get("lastReportSeconds")
            for r in rows}
    out = []
    for node in sorted(connected):
        age = ages.get(node)
        if age is None or age > max_age_s:
            out.append({"proxy": node, "lastReportSeconds": age})
    return out
