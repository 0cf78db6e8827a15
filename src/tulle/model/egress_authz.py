"""AuthorizationPolicies on ExternalServices, resolved for one caller.

An ExternalService has no sidecar of its own: the caller's sidecar enforces the policies that
name it. Its identity is known before any request, so the callers of every rule are decided
here, per proxy, and only what depends on the request (the host, the port, paths, methods and
headers) is left to Envoy (xds/generators/rbac.py, ``egress_rbac_filter``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tulle.model.authorization import Callers, ServiceAuthz
from tulle.model.authz import Operation
from tulle.model.external import MeshExternal


@dataclass(frozen=True)
class HostGuard:
    """What one caller may not do to one host: the RBAC policies of its egress filter."""

    host: str
    http_port: int | None
    # (RBAC policy ID, operations): DENY rules whose callers include this caller; no
    # operations: every request to the host.
    deny: tuple[tuple[str, tuple[Operation, ...]], ...] = ()
    # With ALLOW rules on the host: their RBAC policy ID, and the operations of those whose
    # callers include this caller (each rule's operations; an empty tuple: every request).
    # Requests to the host that match none are denied; no rule for this caller: all are.
    allow_id: str = ""
    allowed: tuple[tuple[Operation, ...], ...] = ()


@dataclass(frozen=True)
class EgressAuthz:
    guards: tuple[HostGuard, ...]
    reveal: bool = True
    # With DryRun policies on some host: every host's guard as if they were enforced.
    dry_run: tuple[HostGuard, ...] | None = None


def _includes(callers: tuple[Callers, ...], identity: str, namespace: str) -> bool:
    """Whether a rule's callers include the caller: no callers means any; a caller without a
    mesh identity (no CA) is none of the named ones, as on the inbound side."""
    if not callers:
        return True
    if not identity:
        return False
    return any(identity in c.identities or c.namespace == namespace for c in callers)


def _deny_id(policy: str, rule: str) -> str:
    return f"AuthorizationPolicy:{policy}:{rule}"


def _allow_id(authz: ServiceAuthz) -> str:
    return "no-ALLOW-rule-matched:" + ",".join(authz.allow_policies) if authz.allow else ""


def policy_hosts(external_authz: Mapping[str, ServiceAuthz]) -> dict[str, str]:
    """The host each egress RBAC policy ID guards (enforced and dry run): what the callers'
    counts per policy are about."""
    out: dict[str, str] = {}
    for host, authz in external_authz.items():
        for which in (authz, authz.dry_run):
            if which is None:
                continue
            out.update({_deny_id(rule.policy, rule.rule): host for rule in which.deny})
            if which.allow:
                out[_allow_id(which)] = host
    return out


def _guard(host: str, external: MeshExternal, authz: ServiceAuthz, identity: str,
           namespace: str) -> HostGuard | None:
    deny = tuple((_deny_id(rule.policy, rule.rule), rule.operations)
                 for rule in authz.deny if _includes(rule.callers, identity, namespace))
    allow_id = _allow_id(authz)
    allowed = tuple(rule.operations for rule in authz.allow
                    if _includes(rule.callers, identity, namespace))
    if not deny and not allow_id:
        return None
    return HostGuard(host, external.spec.http_port, deny, allow_id, allowed)


def _guards(externals: Mapping[str, MeshExternal], authz: Mapping[str, ServiceAuthz],
            identity: str, namespace: str, dry_run: bool) -> tuple[HostGuard, ...]:
    guards = []
    for host, rules in sorted(authz.items()):
        external = externals.get(host)
        if external is None:
            continue
        chosen = rules.dry_run if dry_run and rules.dry_run is not None else rules
        guard = _guard(host, external, chosen, identity, namespace)
        if guard is not None:
            guards.append(guard)
    return tuple(guards)


def egress_authz_for(externals: Mapping[str, MeshExternal],
                     authz: Mapping[str, ServiceAuthz], identity: str, namespace: str
                     ) -> EgressAuthz | None:
    """What the sidecar of a caller (``identity``, ``namespace``) enforces on its calls out of
    the mesh; None when no policy concerns it."""
    guards = _guards(externals, authz, identity, namespace, dry_run=False)
    trying = any(rules.dry_run is not None for rules in authz.values())
    shadow = _guards(externals, authz, identity, namespace, dry_run=True) if trying else None
    if not guards and not shadow:
        return None
    reveal = all(rules.reveal for rules in authz.values())
    return EgressAuthz(guards, reveal, shadow)
