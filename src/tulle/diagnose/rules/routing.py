"""Diagnosis rules: routing. Requests that match no HTTPRoute rule get 404 (NR)."""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    service_subject,
)
from tulle.model.httproute import RouteMatch


def _catch_all(match: RouteMatch) -> bool:
    return (match.path.type == "PathPrefix" and match.path.value == "/" and not match.headers
            and not match.query_params and match.method is None)


def no_route(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1012: requests in a caller's sidecar matched no route rule (404 NR)."""
    for node in sorted({node for node, _ in evidence.window.counters}):
        missed = evidence.proxy_counters(node).get("noroute", 0)
        if not missed:
            continue
        called = evidence.called_by(node)
        found = False
        for ref in sorted(called):
            routes = evidence.mesh.routes.get(ref, ())
            if not routes or any(_catch_all(m) for a in routes for r in a.spec.rules
                                 for m in r.matches):
                continue
            found = True
            subjects = [resource_subject(a.key) for a in routes]
            covered = [f"{resource_subject(a.key)} rule {rule.name or i}: {rule.describe_matches()}"
                       for a in routes for i, rule in enumerate(a.spec.rules)]
            yield Finding(
                "TUL1012", Severity.ERROR, min(95.0, 55.0 + missed), subjects[0],
                f"Requests from {node} to {ref.host} match no rule of "
                f"{', '.join(subjects)}, so its sidecar answers 404 (NR).",
                (f"{node}: {missed} requests matched no route (404, NR) in the window",
                 f"the only paths {ref.host} routes: " + "; ".join(covered)),
                f"add a rule matching those requests (a catch-all `matches: [{{path: {{type: "
                f"PathPrefix, value: /}}}}]` last) to {subjects[0]}, or call a path it "
                "matches",
                related=(service_subject(ref), *subjects[1:]), sources=(proxy_subject(node),))
        if not found:
            yield Finding(
                "TUL1012", Severity.ERROR, min(90.0, 45.0 + missed), proxy_subject(node),
                f"Requests from {node} name a host or path no route matches, so its sidecar "
                "answers 404 (NR).",
                (f"{node}: {missed} requests matched no route (404, NR) in the window",
                 "services it calls: " + (", ".join(sorted(r.host for r in called))
                                          or "none")),
                f"call services by their mesh name (NAME or NAME.NAMESPACE) from {node}; "
                "`tulle get services` lists them",
                sources=(proxy_subject(node),))


RULES = (no_route,)
