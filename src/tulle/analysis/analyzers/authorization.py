"""AuthorizationPolicies that do not do what they say: rules that can never match, ALLOW rules
that a DENY rule overrides whole, and defaults that another default of the same scope hides.
Each is judged with the resolution the control plane applies (tulle.model.authorization)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from tulle.analysis.codes import (
    AUTHZ_ALLOW_OVERRIDDEN,
    AUTHZ_DEFAULT_IGNORED,
    AUTHZ_RULE_NEVER_MATCHES,
)
from tulle.analysis.engine import AnalysisContext
from tulle.model.authorization import covers
from tulle.model.authz import AuthorizationPolicySpec, AuthzRule
from tulle.model.kinds import AUTHORIZATION_POLICY, SERVICE
from tulle.model.meta import ServiceRef
from tulle.model.resource import Resource

KINDS = (AUTHORIZATION_POLICY, SERVICE)


def _spec(policy: Resource) -> AuthorizationPolicySpec:
    return cast(AuthorizationPolicySpec, policy.spec)


def authorization_rules(ctx: AnalysisContext) -> None:
    policies = ctx.resources(AUTHORIZATION_POLICY)
    declared = {ServiceRef(r.meta.namespace, r.meta.name): r.spec
                for r in ctx.resources(SERVICE)}
    workloads = ctx.workloads()
    ports: dict[ServiceRef, set[int]] = {}
    for workload in workloads or ():
        if workload.app_port is not None:
            ports.setdefault(workload.service_ref, set()).add(workload.app_port)
    for policy in policies:
        spec = _spec(policy)
        if spec.target_ref.kind != "Service" or spec.target_ref.name is None:
            continue
        target = ServiceRef(policy.meta.namespace, spec.target_ref.name)
        tcp = getattr(declared.get(target), "protocol", None) == "tcp"
        for r, rule in enumerate(spec.rules):
            why = _never(rule, tcp, spec.action == "ALLOW",
                         ports.get(target) if workloads is not None else None)
            if why:
                ctx.report(AUTHZ_RULE_NEVER_MATCHES, policy.key, f"spec.rules[{r}]",
                           rule=rule.name or str(r), service=target, why=why)
    _overridden(ctx, policies)
    _defaults(ctx, policies)


def _never(rule: AuthzRule, tcp: bool, allow: bool, served: set[int] | None) -> str:
    if not rule.to:
        return ""
    # ``served``: the ports its instances serve, when the registry is known.
    if served and all(op.ports and not set(op.ports) & served for op in rule.to):
        return (f"it names ports {sorted({p for op in rule.to for p in op.ports})}, and "
                f"its instances serve {sorted(served)}")
    if tcp and allow and all(op.http_only for op in rule.to):
        return ("it matches on paths, methods or headers, which a tcp service's sidecar "
                "cannot see: it allows no connection")
    return ""


def _overridden(ctx: AnalysisContext, policies: Sequence[Resource]) -> None:
    """An ALLOW rule of a service whose callers a DENY rule covering the same service denies on
    every request (a DENY rule without ``to``, whose callers include the ALLOW rule's)."""
    denies = [(p, index, rule) for p in policies if _spec(p).action == "DENY"
              for index, rule in enumerate(_spec(p).rules) if not rule.to]
    for policy in policies:
        spec = _spec(policy)
        if spec.action != "ALLOW" or spec.target_ref.kind != "Service" or \
                spec.target_ref.name is None:
            continue
        target = ServiceRef(policy.meta.namespace, spec.target_ref.name)
        for r, rule in enumerate(spec.rules):
            for deny_policy, d, deny in denies:
                if covers(deny_policy, target) and _callers_within(rule, deny, policy,
                                                                   deny_policy):
                    ctx.report(AUTHZ_ALLOW_OVERRIDDEN, policy.key, f"spec.rules[{r}]",
                               rule=rule.name or str(r), service=target,
                               deny=f"{deny_policy.key}", deny_rule=deny.name or str(d))
                    break


def _callers_within(allow: AuthzRule, deny: AuthzRule, allow_policy: Resource,
                    deny_policy: Resource) -> bool:
    if not deny.from_:
        return True
    if not allow.from_:
        return False
    denied = _named_callers(deny, deny_policy)
    namespaces = {value for kind, value in denied if kind == "namespace"}
    for kind, value in _named_callers(allow, allow_policy):
        if (kind, value) in denied:
            continue
        if kind == "service" and value.split("/", 1)[0] in namespaces:
            continue
        return False
    return True


def _named_callers(rule: AuthzRule, policy: Resource) -> set[tuple[str, str]]:
    """(kind, name) of each caller of ``rule``; services as "namespace/name"."""
    out = set()
    for caller in rule.from_:
        if caller.identity is not None:
            out.add(("identity", caller.identity))
        elif caller.service is not None:
            service = caller.service if "/" in caller.service else \
                f"{policy.meta.namespace}/{caller.service}"
            out.add(("service", service))
        elif caller.namespace is not None:
            out.add(("namespace", caller.namespace))
    return out


def _defaults(ctx: AnalysisContext, policies: Sequence[Resource]) -> None:
    kept: dict[tuple[str, str], Resource] = {}
    for policy in policies:
        spec = _spec(policy)
        if spec.default_action is None:
            continue
        scope = ("Mesh", "") if spec.target_ref.kind == "Mesh" else \
            ("Namespace", policy.meta.namespace)
        first = kept.setdefault(scope, policy)
        if first is not policy:
            where = "the mesh" if scope[0] == "Mesh" else f"namespace {scope[1]}"
            ctx.report(AUTHZ_DEFAULT_IGNORED, policy.key, "spec.defaultAction", scope=where,
                       kept=str(first.key), action=_spec(first).default_action)
