"""Diagnosis rules: routing. Requests that match no HTTPRoute rule get 404 (NR) (TUL1012); a
rule that sends a share of its traffic to a backend with no ready instance (TUL1027)."""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    service_subject,
)
from tulle.diagnose.rank import impact
from tulle.diagnose.rules._traffic import Backend, backends, callers, callers_view, share
from tulle.diagnose.rules.egress import refused_hosts
from tulle.model.httproute import RouteMatch
from tulle.model.meta import ServiceRef
from tulle.model.workload import WorkloadState

# No-route 404s are an error from this share of the caller's requests; a few are a warning.
NO_ROUTE_ERROR_SHARE = 0.05
# A starting backend instance this young is a phase, unless callers fail on it.
STARTING_GRACE_S = 10.0


def _catch_all(match: RouteMatch) -> bool:
    return (match.path.type == "PathPrefix" and match.path.value == "/" and not match.headers
            and not match.query_params and match.method is None)


def _partial(evidence: Evidence, ref: ServiceRef) -> bool:
    """Whether ``ref`` has routes and none of their rules matches every request."""
    routes = evidence.mesh.routes.get(ref, ())
    return bool(routes) and not any(_catch_all(m) for a in routes for r in a.spec.rules
                                    for m in r.matches)


def no_route(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1012: requests in a caller's sidecar matched no route rule (404 NR)."""
    refused = refused_hosts(evidence)
    for node in sorted({node for node, _ in evidence.window.counters}):
        # Hosts in no scope count as NR too: TUL1030 explains those, by host.
        missed = evidence.proxy_counters(node).get("noroute", 0) - sum(
            refused.get(node, {}).values())
        if missed <= 0:
            continue
        sent = missed + sum(requests(v) for caller, _, v in evidence.edges() if caller == node)
        severity = (Severity.ERROR if share(missed, sent) >= NO_ROUTE_ERROR_SHARE
                    else Severity.WARNING)
        # NR is a host that names no mesh service (no scope matches it) or a service whose
        # routes leave some paths unmatched: blame one the caller called, else (a caller whose
        # every request missed) any such service, else the host.
        called = {ref for ref in evidence.called_by(node) if _partial(evidence, ref)}
        if not called:
            called = {ref for ref in evidence.mesh.routes if _partial(evidence, ref)}
            if len(called) > 1:
                called = set()  # which one it was, Envoy's counters cannot tell
        found = False
        for ref in sorted(called):
            routes = evidence.mesh.routes.get(ref, ())
            found = True
            subjects = [resource_subject(a.key) for a in routes]
            covered = [f"{resource_subject(a.key)} rule {rule.name or i}: {rule.describe_matches()}"
                       for a in routes for i, rule in enumerate(a.spec.rules)]
            yield Finding(
                "TUL1012", severity, min(95.0, 55.0 + missed), subjects[0],
                f"Requests from {node} to {ref.host} match no rule of "
                f"{', '.join(subjects)}, so its sidecar answers 404 (NR): the mesh produced "
                "these answers, the application never saw the requests.",
                (f"{node}: {missed} requests matched no route (404, NR) in the window",
                 f"the only paths {ref.host} routes: " + "; ".join(covered)),
                f"add a rule matching those requests (a catch-all `matches: [{{path: {{type: "
                f"PathPrefix, value: /}}}}]` last) to {subjects[0]}, or call a path it "
                "matches",
                related=(service_subject(ref), *subjects[1:]), sources=(proxy_subject(node),))
        if not found:
            partial = sorted(r.host for r in evidence.mesh.routes if _partial(evidence, r))
            yield Finding(
                "TUL1012", severity, min(90.0, 45.0 + missed), proxy_subject(node),
                f"Requests from {node} name a host or path no route matches, so its sidecar "
                "answers 404 (NR): the mesh produced these answers.",
                (f"{node}: {missed} requests matched no route (404, NR) in the window",
                 "services it calls: " + (", ".join(sorted(
                     r.host for r in evidence.called_by(node))) or "none"),
                 "services whose routes leave some paths unmatched: "
                 + (", ".join(partial) or "none")),
                f"call services by their mesh name (NAME or NAME.NAMESPACE) from {node}; "
                "`tulle get services` lists them",
                sources=(proxy_subject(node),))


def _not_ready(evidence: Evidence, backend: Backend) -> tuple[str, bool] | None:
    """Why ``backend`` has no ready instance, and whether something ever ran there (then an
    instance finding is the cause); None when it has one, or one is still starting."""
    ref = backend.ref
    if evidence.mesh.endpoints_of(ref):
        return None
    instances = evidence.instances_of(ref)
    departed = evidence.departed_of(ref)
    young = [w for w in instances if w.state is WorkloadState.STARTING
             and evidence.now - w.registered_at < STARTING_GRACE_S]
    if young and not callers_view(evidence, [ref]).get("rq5"):
        return None
    if instances:
        states = ", ".join(f"{w.name} is {w.state.value}" for w in instances)
        return f"its instances are not ready ({states})", True
    if departed:
        return f"its instances stopped ({', '.join(departed)})", True
    service = evidence.mesh.services.get(ref)
    if service is not None and service.selector:
        labels = ", ".join(f"{k}={v}" for k, v in service.selector)
        return f"no workload matches its selector ({labels})", False
    return "no instance of it has ever run", False


def routes_to_nothing(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1027: a rule sends a share of its traffic to a backend with no ready instance."""
    for backend in backends(evidence):
        if not backend.weight:
            continue
        why = _not_ready(evidence, backend)
        if why is None:
            continue
        reason, ran = why
        seen = callers_view(evidence, [backend.ref])
        failed, sent = seen.get("rq5", 0), requests(seen)
        severity = (Severity.CRITICAL if failed and backend.share >= 1.0 else
                    Severity.ERROR if failed else Severity.WARNING)
        parent = backend.route.key
        yield Finding(
            "TUL1027", severity, impact(failed, sent, base=50 + 30 * backend.share),
            backend.subject,
            f"{backend.subject} sends {backend.share:.0%} of its traffic to "
            f"{backend.ref.host}, which has no ready instance: {reason}. Those requests get "
            "503 no healthy upstream, which the mesh answers itself (UH).",
            (backend.describe(),
             f"{backend.ref.host}: {reason}",
             f"callers got {failed} of {sent} requests to {backend.ref.host} answered 5xx in "
             "the window"),
            f"start an instance of {backend.ref.host}, or set its weight to 0 in "
            f"{resource_subject(parent)} (spec.rules[{backend.index}].backendRefs)"
            + ("" if ran else "; check the backend's name and its Service's selector"),
            related=(service_subject(backend.ref), resource_subject(parent)),
            sources=tuple(proxy_subject(n) for n in callers(evidence, [backend.ref])),
            symptom=ran)


RULES = (no_route, routes_to_nothing)
