"""`tulle describe service`: what is in force for a service, and where each piece comes from."""

from __future__ import annotations

import dataclasses
from typing import Any

from tulle.errors import NotFoundError
from tulle.model.authorization import ServiceAuthz
from tulle.model.httproute import RouteMatch, RouteRule
from tulle.model.kinds import ROLLOUT
from tulle.model.mesh import AttachedRoute, MeshService, MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.model.paths import match_precedence
from tulle.model.policies import ServicePolicy
from tulle.model.rollout import STATUS, RolloutStatus
from tulle.model.slo import mesh_slos, window_text
from tulle.model.spec_config import to_camel
from tulle.telemetry.schema import rule_key


def describe_service(mesh: MeshSnapshot, ref: ServiceRef) -> dict[str, Any]:
    service = mesh.services.get(ref)
    if service is None:
        known = sorted(str(s) for s in mesh.services if s.namespace == ref.namespace)
        raise NotFoundError(f"no service {ref.name} in namespace {ref.namespace}",
                            hint=f"services there: {', '.join(known) or 'none'}")
    resource = next((r for r in mesh.resources.values() if r.info.kind == "Service"
                     and r.meta.namespace == ref.namespace and r.meta.name == ref.name), None)
    instances = [w for w in mesh.workloads.values() if w.service_ref == ref or (
        service.selector and w.namespace == ref.namespace and w.matches(service.selector))]
    return {
        "name": ref.name,
        "namespace": ref.namespace,
        "protocol": service.protocol,
        # Why this protocol: declared on the Service, or detected per request.
        "protocolSource": "detected" if service.detected else "declared",
        "mtlsMode": service.mtls_mode,
        "declaredBy": str(resource.key) if resource else None,
        "selector": dict(service.selector),
        "identities": list(service.identities),
        "instances": [{"name": w.name, "version": w.version, "state": w.state.value,
                       "stateReason": w.state_reason}
                      for w in instances],
        "endpoints": [e.workload for e in mesh.endpoints_of(ref)],
        "routes": _routes(service, mesh.routes.get(ref, ())),
        "routesInDryRun": _trial(mesh, service),
        "policy": _policy(service.policy),
        "subsets": [{"name": s.ref.name, "selector": dict(s.selector)}
                    for s in mesh.services.values()
                    if s.selector and s.ref.namespace == ref.namespace and s.ref != ref
                    and dict(s.selector).get("service") == ref.name],
        "backendOf": sorted({str(a.key) for routes in mesh.routes.values() for a in routes
                             for rule in a.spec.rules for b in rule.backend_refs
                             if ServiceRef(b.namespace or a.key.namespace, b.name) == ref}),
        "conflicts": [dataclasses.asdict(c) for c in mesh.conflicts
                      if c.target == f"Service {ref.namespace}/{ref.name}"],
        "authorization": _authorization(mesh.authz.get(ref)),
        "objectives": _objectives(mesh, ref),
        "rollouts": _rollouts(mesh, ref),
    }


def _rollouts(mesh: MeshSnapshot, ref: ServiceRef) -> list[dict[str, Any]]:
    """The Rollouts of the service, where each is."""
    out = []
    for key, resource in sorted(mesh.resources.items()):
        if resource.info is not ROLLOUT or key.namespace != ref.namespace or \
                resource.spec.service != ref.name:
            continue
        status = RolloutStatus.from_json(dict(resource.meta.annotations).get(STATUS))
        out.append({"name": key.name, "stable": resource.spec.stable,
                    "canary": resource.spec.canary, "phase": status.phase,
                    "step": status.step + 1, "steps": len(resource.spec.steps),
                    "weight": status.weight, "message": status.message})
    return out


def _objectives(mesh: MeshSnapshot, ref: ServiceRef) -> list[dict[str, Any]]:
    """The ServiceLevelObjectives on the service, or on a rule of a route attached to it."""
    routes = {f"{a.key.namespace}/{a.key.name}" for a in mesh.routes.get(ref, ())}
    return [{"name": slo.key.name, "namespace": slo.key.namespace, "target": slo.target,
             "window": window_text(slo.window_s),
             "indicators": [i.describe() for i in slo.indicators]}
            for slo in mesh_slos((k, r.spec) for k, r in mesh.resources.items())
            if slo.service == ref or (slo.route is not None and slo.route in routes)]


def _authorization(authz: ServiceAuthz | None) -> dict[str, Any]:
    """The AuthorizationPolicy rules its instances enforce, in the order they decide, and
    the ones in dry run."""
    def rules(which: ServiceAuthz) -> list[dict[str, Any]]:
        out = [{"action": "DENY", "from": f"AuthorizationPolicy {r.policy}", "rule": r.rule}
               for r in which.deny]
        out += [{"action": "ALLOW", "from": f"AuthorizationPolicy {r.policy}", "rule": r.rule}
                for r in which.allow]
        return out

    if authz is None:
        return {"rules": [], "unmatched": "ALLOW", "unmatchedFrom": None, "dryRun": None}
    unmatched_from = (", ".join(f"AuthorizationPolicy {p}" for p in authz.allow_policies)
                      if authz.allow else
                      f"AuthorizationPolicy {authz.default_deny}" if authz.default_deny else None)
    dry_run = None
    if authz.dry_run is not None:
        dry_run = {"rules": rules(authz.dry_run),
                   "unmatched": "DENY" if authz.dry_run.denies_unmatched else "ALLOW"}
    return {"rules": rules(authz),
            "unmatched": "DENY" if authz.denies_unmatched else "ALLOW",
            "unmatchedFrom": unmatched_from, "dryRun": dry_run}


def _trial(mesh: MeshSnapshot, service: MeshService) -> dict[str, Any] | None:
    """The routing its DryRun HTTPRoutes would make, tried and not in force."""
    trial = mesh.route_trials.get(service.ref)
    if trial is None:
        return None
    return {"trying": [f"HTTPRoute {k.namespace}/{k.name}" for k in trial.trying],
            "routes": _routes(service, trial.routes)}


def _routes(service: MeshService, attached: tuple[AttachedRoute, ...]
            ) -> list[dict[str, Any]]:
    if not attached:
        return [{"from": None, "rule": "default", "match": "any request",
                 "backends": [{"service": service.ref.name, "weight": 1}],
                 "details": []}]
    rows: list[tuple[tuple[int, ...], int, dict[str, Any]]] = []
    for route in attached:
        for r, rule in enumerate(route.spec.rules):
            policy = route.rule_policy(r)
            details = _rule_details(rule)
            for setting, source in policy.sources:
                details.append(f"{to_camel(setting)} from {source}")
            for match in rule.matches:
                rows.append((match_precedence(match), len(rows), {
                    "from": f"HTTPRoute {route.key.namespace}/{route.key.name}",
                    # As `tulle routes` and diagnose name it: its name, or its index.
                    "rule": rule_key(r, rule.name),
                    "match": _match_text(match),
                    "backends": [{"service": b.name, "weight": b.weight}
                                 for b in rule.backend_refs],
                    "details": details,
                }))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row for _, _, row in rows]


def _rule_details(rule: RouteRule) -> list[str]:
    details: list[str] = [str(item.type) for item in rule.filters]
    if rule.timeouts is not None:
        details += [f"{name} timeout {value}" for name, value in
                    (("request", rule.timeouts.request),
                     ("backendRequest", rule.timeouts.backend_request)) if value]
    if rule.retry is not None:
        codes = ",".join(map(str, rule.retry.codes)) or "5xx"
        details.append(f"retry {rule.retry.attempts}x on {codes}")
    return details


def _match_text(match: RouteMatch) -> str:
    parts = [f"{match.path.type} {match.path.value}"]
    if match.method:
        parts.append(f"method {match.method}")
    parts += [f"header {h.name}{'~' if h.type != 'Exact' else '='}{h.value}"
              for h in match.headers]
    parts += [f"query {q.name}{'~' if q.type != 'Exact' else '='}{q.value}"
              for q in match.query_params]
    return ", ".join(parts)


def _policy(policy: ServicePolicy) -> list[dict[str, Any]]:
    out = []
    for setting, source in policy.sources:
        value = getattr(policy, setting)
        out.append({"setting": to_camel(setting), "from": source,
                    "value": _camel_dict(dataclasses.asdict(value))})
    return out


def _camel_dict(value: Any) -> Any:
    if isinstance(value, dict):
        return {to_camel(k): _camel_dict(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_camel_dict(v) for v in value]
    return value
