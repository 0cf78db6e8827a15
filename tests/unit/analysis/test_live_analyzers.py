"""Analyzers that need the registry's workloads or telemetry, fed hand-built inputs: inline
YAML, workload records and telemetry windows mapped to the (code, resource) pairs expected."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.unit.analysis.support import NO_TRAFFIC, Finding, findings, node, run, traffic
from tests.unit.model.workloads import workload
from tulle.analysis.traffic import Traffic
from tulle.model.workload import Workload
from tulle.telemetry.schema import SeriesKey

BOOKS = workload("books-1", "books", version="v1")
WEB = workload("web-1", "web")
EVERYONE = [BOOKS, WEB, workload("authors-1", "authors"), workload("legacy-1", "legacy")]
NODES = (node("books-1", "books"), node("web-1", "web"), node("authors-1", "authors"),
         node("legacy-1", "legacy"))
IN = SeriesKey("in")
PLAIN = SeriesKey("in_plain")


def out(service: str) -> SeriesKey:
    return SeriesKey("out", f"{service}.default")


SUBSET = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-v2}
spec: {selector: {service: books, version: v2}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books, weight: 90}, {name: books-v2, weight: 10}]
"""

POLICIES = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: authors}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: authors}
spec:
  parentRefs: [{name: authors}]
  rules: [{backendRefs: [{name: authors}]}]
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: idle}
spec:
  targetRefs: [{kind: Service, name: authors}]
  connectionPool: {maxConnections: 10}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: idle-route}
spec:
  targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: authors}]
  rateLimit: {requests: 10}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: busy}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 10}
"""

# A subset by a label of the workloads' own (`tulle run --label track=canary`), of any service.
CANARIES = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: canaries}
spec: {selector: {track: canary}}
"""
CANARY = (("track", "canary"),)

WORKLOAD_CASES: list[tuple[str, str, Sequence[Workload], list[Finding]]] = [
    ("subset without workloads", SUBSET, [BOOKS],
     [("TUL0004", "Service default/books-v2")]),
    ("subset in another namespace", SUBSET, [BOOKS, workload("b", "books", version="v2",
                                                             namespace="shop")],
     [("TUL0004", "Service default/books-v2")]),
    ("subset with a workload", SUBSET, [BOOKS, workload("books-2", "books", version="v2")], []),
    # A workload's "service" label is the service it registered under, whatever it sets.
    ("subset's service label set by another service", SUBSET,
     [BOOKS, workload("web-2", "web", version="v2", labels=(("service", "books"),))],
     [("TUL0004", "Service default/books-v2")]),
    ("subset by label with a workload", CANARIES, [BOOKS, workload("web-2", "web",
                                                                   labels=CANARY)], []),
    ("subset by label without workloads", CANARIES,
     [BOOKS, workload("web-2", "web", labels=CANARY, namespace="shop")],
     [("TUL0004", "Service default/canaries")]),
    ("policies without workloads", POLICIES, [BOOKS],
     [("TUL0015", "TrafficPolicy default/idle"), ("TUL0015", "TrafficPolicy default/idle-route")]),
    ("policies with workloads", POLICIES, [BOOKS, workload("authors-1", "authors")], []),
]


@pytest.mark.parametrize(("text", "workloads", "expected"),
                         [case[1:] for case in WORKLOAD_CASES],
                         ids=[case[0] for case in WORKLOAD_CASES])
def test_workload_analyzers(text: str, workloads: Sequence[Workload],
                            expected: list[Finding]) -> None:
    assert findings(text, workloads=workloads, traffic=NO_TRAFFIC) == sorted(expected)


def test_subset_message_names_the_users_and_the_workloads() -> None:
    [message] = run(SUBSET, workloads=[BOOKS], traffic=NO_TRAFFIC).messages
    assert message.field == "spec.selector"
    assert "{service: books, version: v2}" in message.message
    assert "used by HTTPRoute default/canary" in message.message
    assert "books-1 ({service: books, version: v1})" in message.fix


def test_services_of_workloads_are_known_live_but_not_in_files() -> None:
    text = SUBSET.replace("name: books, weight: 90", "name: web, weight: 90")
    assert ("TUL0001", "HTTPRoute default/canary") in findings(text)
    live = findings(text, workloads=[BOOKS, WEB, workload("v2", "books", version="v2")],
                    traffic=NO_TRAFFIC)
    assert live == []


CHAIN = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}], retry: {attempts: BOOKS_RETRIES}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: authors}
spec:
  parentRefs: [{name: authors}]
  rules:
  - matches: [{path: {value: /a}}]
    backendRefs: [{name: authors}]
  - backendRefs: [{name: authors}]
    retry: {attempts: AUTHORS_RETRIES}
"""
SERVICES = "".join(f"---\napiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {{name: {s}}}\n"
                   for s in ("books", "authors", "web", "legacy"))
# web-1 calls books, books-1 calls authors.
CALLS = traffic({("web-1.default", out("books")): {"rq2": 100},
                 ("books-1.default", out("authors")): {"rq2": 100}}, nodes=NODES)
WEB_ONLY = traffic({("web-1.default", out("books")): {"rq2": 100}}, nodes=NODES)


def chain(books: int, authors: int) -> str:
    return CHAIN.replace("BOOKS_RETRIES", str(books)).replace(
        "AUTHORS_RETRIES", str(authors)) + SERVICES


TELEMETRY_CASES: list[tuple[str, str, Traffic, list[Finding]]] = [
    ("retries multiply: 4 x 4", chain(3, 3), CALLS, [("TUL0012", "HTTPRoute default/authors")]),
    ("retries multiply: 3 x 3", chain(2, 2), CALLS, []),
    ("no hop from books to authors", chain(3, 3), WEB_ONLY, []),
]

MTLS = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec: {mtls: {mode: MODE}}
"""
MESH_PERMISSIVE = """\
---
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {mtls: {mode: MESH_MODE}}
"""
PLAINTEXT = traffic({("books-1.default", PLAIN): {"rq2": 30}, ("books-1.default", IN):
                     {"rq2": 70}}, nodes=NODES)
TLS_FAILING = traffic({("books-1.default", IN): {"rq2": 70, "tls_err": 4}}, nodes=NODES)
TELEMETRY_CASES += [
    ("plaintext callers, the Service goes STRICT", MTLS.replace("MODE", "STRICT"), PLAINTEXT,
     [("TUL0013", "Service default/books")]),
    ("plaintext callers, the Mesh goes STRICT",
     MTLS.replace("spec: {mtls: {mode: MODE}}", "") + MESH_PERMISSIVE.replace(
         "MESH_MODE", "STRICT"), PLAINTEXT, [("TUL0013", "Mesh default")]),
    ("plaintext callers, staying PERMISSIVE", MTLS.replace("MODE", "PERMISSIVE"), PLAINTEXT, []),
    ("plaintext callers of a PERMISSIVE mesh",
     MTLS.replace("spec: {mtls: {mode: MODE}}", "") + MESH_PERMISSIVE.replace(
         "MESH_MODE", "PERMISSIVE"), PLAINTEXT, []),
    ("only mTLS callers", MTLS.replace("MODE", "STRICT"),
     traffic({("books-1.default", IN): {"rq2": 70}}, nodes=NODES), []),
    ("TLS failures on STRICT", MTLS.replace("MODE", "STRICT"), TLS_FAILING,
     [("TUL0014", "Service default/books")]),
    ("TLS failures on PERMISSIVE", MTLS.replace("MODE", "PERMISSIVE"), TLS_FAILING, []),
]

RATE_LIMITS = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: search
    matches: [{path: {value: /search}}]
    backendRefs: [{name: books}]
  - backendRefs: [{name: books}]
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: instance-limit}
spec:
  targetRefs: [{kind: Service, name: books}]
  rateLimit: {requests: 10, interval: 2s}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: search-limit}
spec:
  targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: books,
                sectionName: search}]
  rateLimit: {requests: 1}
"""
SEARCH = SeriesKey("route", "books.default", "default/books", "search")
OTHER_RULE = SeriesKey("route", "books.default", "default/books", "1")


def rates(books_rq: int, search_rq: int) -> Traffic:
    """Over 60 s: books-1 receives ``books_rq``, web-1 sends ``search_rq`` to /search."""
    return traffic({("books-1.default", IN): {"rq2": books_rq, "rq4": 0},
                    ("books-1.default", PLAIN): {"rq2": 0},
                    ("web-1.default", SEARCH): {"rq2": search_rq},
                    ("web-1.default", OTHER_RULE): {"rq2": 6000}}, nodes=NODES)


TELEMETRY_CASES += [
    ("rate limits above traffic", RATE_LIMITS, rates(240, 30), []),
    ("the instance limit is below traffic", RATE_LIMITS, rates(600, 30),
     [("TUL0016", "TrafficPolicy default/instance-limit")]),
    ("the rule limit is below one caller's traffic", RATE_LIMITS, rates(240, 120),
     [("TUL0016", "TrafficPolicy default/search-limit")]),
    ("no traffic", RATE_LIMITS, NO_TRAFFIC, []),
]

POOL = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: MAXCX, maxRequests: MAXRQ, maxPendingRequests: 1}
"""


def pool(max_connections: int, max_requests: int) -> str:
    return POOL.replace("MAXCX", str(max_connections)).replace("MAXRQ", str(max_requests))


# web-1 keeps 8 connections to books; its requests spent 240 s over 60 s: 4 in flight.
BUSY = traffic({("web-1.default", out("books")): {"rq2": 6000, "latsum": 240_000,
                                                  "overflow": 3}},
               gauges={("web-1.default", out("books")): {"cx": 8}}, nodes=NODES)
TELEMETRY_CASES += [
    ("pool limits above concurrency", pool(16, 8), BUSY, []),
    ("maxConnections below the open connections", pool(4, 8), BUSY,
     [("TUL0017", "TrafficPolicy default/pool")]),
    ("both limits below", pool(4, 2), BUSY,
     [("TUL0017", "TrafficPolicy default/pool"), ("TUL0017", "TrafficPolicy default/pool")]),
]


@pytest.mark.parametrize(("text", "given", "expected"), [case[1:] for case in TELEMETRY_CASES],
                         ids=[case[0] for case in TELEMETRY_CASES])
def test_telemetry_analyzers(text: str, given: Traffic, expected: list[Finding]) -> None:
    assert findings(text, workloads=EVERYONE, traffic=given) == sorted(expected)


@pytest.mark.parametrize(("text", "given", "field", "says"), [
    (chain(3, 3), CALLS, "spec.rules[1].retry.attempts",
     "one request along web.default -> books.default -> authors.default can reach "
     "authors.default up to 16 times (4 at books.default x 4 at authors.default)"),
    (MTLS.replace("MODE", "STRICT"), PLAINTEXT, "spec.mtls.mode",
     "30 plaintext request(s) reached books.default in the last 1m"),
    (MTLS.replace("MODE", "STRICT"), TLS_FAILING, "spec.mtls.mode",
     "4 connection(s) to books.default failed the TLS handshake"),
    (RATE_LIMITS, rates(600, 30), "spec.rateLimit.requests",
     "instance books-1 of books.default receives 10 requests/s over the last 1m, above the "
     "limit of 5 requests/s (per instance): about 50% of those requests would get 429"),
    (RATE_LIMITS, rates(240, 120), "spec.rateLimit.requests",
     "caller web-1 sends 2 requests/s"),
    (pool(4, 2), BUSY, "spec.connectionPool.maxConnections",
     "web-1 has 8 open connections to books.default (last 1m), above "
     "connectionPool.maxConnections = 4"),
    (pool(4, 2), BUSY, "spec.connectionPool.maxRequests",
     "4 requests in flight on average"),
])
def test_telemetry_message_text(text: str, given: Traffic, field: str, says: str) -> None:
    messages = [m for m in run(text, workloads=EVERYONE, traffic=given).messages
                if m.field == field]
    assert any(says in m.message for m in messages), [m.message for m in messages]
