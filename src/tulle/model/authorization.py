"""Which AuthorizationPolicy rules apply to each service, resolved against the snapshot.

A caller named by service becomes the identities of that service's instances (and of its
default service account, so that a policy written before the caller starts still holds). The
result is one frozen value per service with any policy: the inbound listener's RBAC filter is
generated from it (xds/generators/rbac.py), and nothing else reads the policies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import cast

from tulle.identity.spiffe import spiffe_id
from tulle.model.authz import AuthorizationPolicySpec, Caller, Operation
from tulle.model.kinds import AUTHORIZATION_POLICY
from tulle.model.meta import ServiceRef
from tulle.model.resource import Resource


@dataclass(frozen=True)
class Callers:
    """One caller, resolved: any of ``identities``, or any identity of ``namespace``."""

    identities: tuple[str, ...] = ()
    namespace: str | None = None


@dataclass(frozen=True)
class ResolvedRule:
    policy: str  # "namespace/name"
    rule: str  # its name, or its index
    callers: tuple[Callers, ...]  # empty: any caller, in the mesh or not
    operations: tuple[Operation, ...]  # empty: any request


@dataclass(frozen=True)
class ServiceAuthz:
    trust_domain: str
    deny: tuple[ResolvedRule, ...] = ()
    allow: tuple[ResolvedRule, ...] = ()
    # The policy whose defaultAction: DENY applies, when no ALLOW policy does.
    default_deny: str | None = None
    reveal: bool = True  # the 403's body names the policy (Mesh spec.authorization)
    # With DryRun policies on the service: every policy as if they were enforced. Envoy
    # evaluates it beside the enforced rules (shadow rules) and only counts its denials.
    dry_run: ServiceAuthz | None = None

    @property
    def allow_policies(self) -> tuple[str, ...]:
        return tuple(sorted({rule.policy for rule in self.allow}))

    @property
    def denies_unmatched(self) -> bool:
        """Requests no rule matches are denied: by an ALLOW policy, or by the default."""
        return bool(self.allow) or self.default_deny is not None


def covers(policy: Resource, service: ServiceRef) -> bool:
    """Whether ``policy`` applies to the mesh service ``service``."""
    spec = cast(AuthorizationPolicySpec, policy.spec)
    target = spec.target_ref
    if target.kind == "Mesh":
        return True
    if policy.meta.namespace != service.namespace:
        return False
    return target.kind == "Namespace" or (target.kind == "Service" and
                                          target.name == service.name)


def covers_external(policy: Resource, external: ServiceRef) -> bool:
    """Whether ``policy`` applies to the ExternalService ``external`` (namespace/name)."""
    target = cast(AuthorizationPolicySpec, policy.spec).target_ref
    return target.kind == "ExternalService" and policy.meta.namespace == external.namespace \
        and target.name == external.name


def resolve(resources: Iterable[Resource], services: Iterable[ServiceRef], trust_domain: str,
            identities_of: Callable[[ServiceRef], tuple[str, ...]], reveal: bool = True,
            applies: Callable[[Resource, ServiceRef], bool] = covers
            ) -> Mapping[ServiceRef, ServiceAuthz]:
    """What each service enforces, with (``dry_run``) what it would with its DryRun policies
    enforced too. ``applies``: which policies cover a target (``covers_external`` for
    ExternalServices)."""
    policies = sorted((r for r in resources if r.info is AUTHORIZATION_POLICY),
                      key=lambda r: r.key)
    services = tuple(services)
    enforced = [p for p in policies if _spec(p).mode == "Enforce"]
    resolved = dict(_resolve(enforced, services, trust_domain, identities_of, reveal, applies))
    trying = [p for p in policies if _spec(p).mode == "DryRun"]
    if trying:
        promoted = _resolve(policies, services, trust_domain, identities_of, reveal, applies)
        for service in services:
            if any(applies(p, service) for p in trying):
                base = resolved.get(service, ServiceAuthz(trust_domain, reveal=reveal))
                resolved[service] = replace(
                    base, dry_run=promoted.get(service, ServiceAuthz(trust_domain)))
    return resolved


def _spec(policy: Resource) -> AuthorizationPolicySpec:
    return cast(AuthorizationPolicySpec, policy.spec)


def _resolve(policies: list[Resource], services: tuple[ServiceRef, ...], trust_domain: str,
             identities_of: Callable[[ServiceRef], tuple[str, ...]], reveal: bool,
             applies: Callable[[Resource, ServiceRef], bool]
             ) -> dict[ServiceRef, ServiceAuthz]:
    resolved: dict[ServiceRef, ServiceAuthz] = {}
    for service in services:
        deny: list[ResolvedRule] = []
        allow: list[ResolvedRule] = []
        defaults: dict[str, str | None] = {}  # scope kind -> denying policy, or None (ALLOW)
        for policy in policies:
            if not applies(policy, service):
                continue
            spec = cast(AuthorizationPolicySpec, policy.spec)
            name = f"{policy.meta.namespace}/{policy.meta.name}"
            if spec.default_action is not None:
                defaults.setdefault(spec.target_ref.kind,
                                    name if spec.default_action == "DENY" else None)
                continue
            rules = deny if spec.action == "DENY" else allow
            for index, rule in enumerate(spec.rules):
                callers = tuple(_callers(caller, policy.meta.namespace, trust_domain,
                                         identities_of) for caller in rule.from_)
                rules.append(ResolvedRule(name, rule.name or str(index), callers, rule.to))
        default_deny = defaults.get("Namespace", defaults.get("Mesh"))
        if deny or allow or default_deny is not None:
            resolved[service] = ServiceAuthz(trust_domain, tuple(deny), tuple(allow),
                                             default_deny, reveal)
    return resolved


def _callers(caller: Caller, namespace: str, trust_domain: str,
             identities_of: Callable[[ServiceRef], tuple[str, ...]]) -> Callers:
    if caller.identity is not None:
        return Callers(identities=(caller.identity,))
    if caller.namespace is not None:
        return Callers(namespace=caller.namespace)
    assert caller.service is not None  # authz_checks: exactly one is set
    owner, _, name = caller.service.rpartition("/")
    ref = ServiceRef(owner or namespace, name)
    known = set(identities_of(ref))
    if trust_domain:
        known.add(spiffe_id(trust_domain, ref.namespace, ref.name))
    return Callers(identities=tuple(sorted(known)))
