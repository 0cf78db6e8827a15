"""The AuthorizationPolicy decision on one request, as the callee's RBAC filter makes it.

xds/generators/rbac.py turns a service's resolved rules into RBAC policies of one DENY
filter; this evaluates the same policies on a request: each DENY rule, "no ALLOW rule
matched", the default deny. Envoy reports the first matching policy in the order of their
IDs, and so does this.
"""

from __future__ import annotations

from tulle.identity.spiffe import parse as parse_spiffe
from tulle.model.authorization import Callers, ResolvedRule, ServiceAuthz
from tulle.model.authz import Operation
from tulle.whatif.matching import Request, header_matches, path_matches


def _caller(callers: Callers, identity: str, trust_domain: str) -> bool:
    if not identity:
        return False  # plaintext: no identity, no caller rule matches
    if callers.namespace is not None:
        parsed = parse_spiffe(identity)
        return parsed is not None and parsed[:2] == (trust_domain, callers.namespace)
    return identity in callers.identities


def _operation(operation: Operation, request: Request, port: int) -> bool:
    if operation.ports and port not in operation.ports:
        return False
    if operation.paths and not any(path_matches(p.type, p.value, request.bare_path)
                                   for p in operation.paths):
        return False
    if operation.methods and request.method not in operation.methods:
        return False
    return all(header_matches(header.type, header.value, request.header_values(header.name))
               for header in operation.headers)


def rule_matches(rule: ResolvedRule, identity: str, request: Request, port: int,
                 trust_domain: str) -> bool:
    if rule.callers and not any(_caller(c, identity, trust_domain) for c in rule.callers):
        return False
    return not rule.operations or any(_operation(o, request, port) for o in rule.operations)


def denied_by(authz: ServiceAuthz, identity: str, request: Request, port: int) -> str | None:
    """The RBAC policy ID that denies the request, or None: allowed."""
    matched: list[str] = []
    for rule in authz.deny:
        if rule_matches(rule, identity, request, port, authz.trust_domain):
            matched.append(f"AuthorizationPolicy:{rule.policy}:{rule.rule}")
    if authz.allow:
        if not any(rule_matches(rule, identity, request, port, authz.trust_domain)
                   for rule in authz.allow):
            matched.append("no-ALLOW-rule-matched:" + ",".join(authz.allow_policies))
    elif authz.default_deny is not None:
        matched.append(f"default-deny:{authz.default_deny}")
    return min(matched) if matched else None
