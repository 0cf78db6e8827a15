"""Diagnosis rules: AuthorizationPolicies denying calls (TUL1028), and dry-run policies that
would (TUL1029).

A denial is a 403 the callee's sidecar answers itself: the application never sees the request.
The evidence is the instances' RBAC counters per RBAC policy (an ``AUTHZ`` series each: a DENY
rule, "no ALLOW rule matched", a default deny), and the callers that got 403 from the service,
with their identities. When the policy that denies was changed in the window and its service
answered before the change without denials, the change is named, with how to undo it.
"""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, code_count, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    service_subject,
)
from tulle.diagnose.rank import impact
from tulle.diagnose.rules.controlplane import change_name, diff_summary, rollback_fix, when
from tulle.model.egress_authz import policy_hosts
from tulle.model.kinds import AUTHORIZATION_POLICY
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.store.base import Change
from tulle.telemetry.schema import AUTHZ, AUTHZ_DENIED, AUTHZ_WOULD_DENY, EGRESS_AUTHZ

Counts2 = dict[str, tuple[int, list[str]]]  # policy ID -> (requests, nodes)
Counts = dict[ServiceRef, Counts2]


def policies_of(policy_id: str) -> tuple[ResourceKey, ...]:
    """The AuthorizationPolicies an RBAC policy ID stands for."""
    _, _, rest = policy_id.partition(":")
    if policy_id.startswith("AuthorizationPolicy:"):
        rest = rest.rpartition(":")[0]
    keys = []
    for item in rest.split(","):
        namespace, _, name = item.partition("/")
        if name:
            keys.append(ResourceKey(AUTHORIZATION_POLICY.kind, namespace, name))
    return tuple(keys)


def describe_id(policy_id: str) -> str:
    """An RBAC policy ID in words."""
    kind, _, rest = policy_id.partition(":")
    if kind == "AuthorizationPolicy":
        policy, _, rule = rest.rpartition(":")
        return f"rule {rule} of AuthorizationPolicy {policy} (DENY)"
    if kind == "default-deny":
        return f"the default deny of AuthorizationPolicy {rest}"
    return f"no ALLOW rule of {', '.join(f'AuthorizationPolicy {p}' for p in rest.split(','))}"


def _counts(evidence: Evidence, field: str) -> Counts:
    out: Counts = {}
    for (node, key), values in sorted(evidence.window.counters.items()):
        count = values.get(field, 0) if key.kind == AUTHZ else 0
        if not count or (ref := evidence.service_of(node)) is None:
            continue
        total, nodes = out.setdefault(ref, {}).get(key.rule, (0, []))
        out[ref][key.rule] = (total + count, [*nodes, node])
    return out


def _caller(evidence: Evidence, node: str) -> str:
    info = evidence.nodes.get(node)
    return f"{node} ({info.identity})" if info and info.identity else node


def denied(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1028: AuthorizationPolicies deny calls to a service (403 from its sidecars)."""
    for ref, by_policy in sorted(_counts(evidence, AUTHZ_DENIED).items()):
        total = sum(n for n, _ in by_policy.values())
        lines = [f"{describe_id(pid)}: denied {n} requests at {', '.join(nodes)}"
                 for pid, (n, nodes) in sorted(by_policy.items())]
        callers = [(node, code_count(values, 403), requests(values))
                   for node, dst, values in evidence.edges() if dst == ref
                   and code_count(values, 403)]
        lines += [f"{_caller(evidence, node)} -> {ref.host}: {n} of {t} requests got 403"
                  for node, n, t in callers]
        keys = sorted({key for pid in by_policy for key in policies_of(pid)})
        started = _changes(evidence, keys)
        answered = sum(t for _, _, t in callers) or total
        cause = (f"AuthorizationPolicies deny calls to {ref.host}: its sidecars answer 403 "
                 "themselves, the application never sees these requests.")
        fix = (f"if these callers should reach {ref.host}, allow them (an ALLOW rule naming "
               "them) or narrow the DENY rule; `tulle get authorizationpolicies` lists the "
               "policies, and the 403's body names the one that denied")
        severity = Severity.WARNING
        if started:
            change = started[0]
            lines.append(f"changed {when(change.at)}: revision {change.revision}, "
                         f"{change_name(change)} {diff_summary(change)}")
            cause += f" The denials started with a change to {change_name(change)}."
            fix = rollback_fix(change) + "; or " + fix
            severity = Severity.ERROR
        yield Finding(
            "TUL1028", severity, impact(total, max(answered, total), base=55),
            resource_subject(keys[0]) if keys else service_subject(ref), cause, tuple(lines),
            fix, related=(service_subject(ref), *(resource_subject(k) for k in keys[1:]),
                          *sorted({proxy_subject(n) for _, nodes in by_policy.values()
                                   for n in nodes})),
            sources=tuple(proxy_subject(n) for n, _, _ in callers))


def _changes(evidence: Evidence, keys: list[ResourceKey]) -> list[Change]:
    """The changes to these policies within the window."""
    return [change for key in keys
            if (change := evidence.last_change(key.kind, key.namespace, key.name))
            is not None and change.at >= evidence.now - evidence.window.span]


def _egress_counts(evidence: Evidence, field: str) -> dict[str, Counts2]:
    """Host -> RBAC policy ID -> (requests, caller nodes), from the callers' egress filters."""
    hosts = policy_hosts(evidence.mesh.external_authz)
    out: dict[str, Counts2] = {}
    for (node, key), values in sorted(evidence.window.counters.items()):
        count = values.get(field, 0) if key.kind == EGRESS_AUTHZ else 0
        if not count:
            continue
        host = hosts.get(key.rule, "an ExternalService")
        total, nodes = out.setdefault(host, {}).get(key.rule, (0, []))
        out[host][key.rule] = (total + count, [*nodes, node])
    return out


def egress_denied(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1028, out of the mesh: AuthorizationPolicies on an ExternalService deny calls to it
    (403 from the callers' own sidecars)."""
    for host, by_policy in sorted(_egress_counts(evidence, AUTHZ_DENIED).items()):
        total = sum(n for n, _ in by_policy.values())
        lines = [f"{describe_id(pid)}: denied {n} requests of "
                 f"{', '.join(_caller(evidence, node) for node in nodes)}"
                 for pid, (n, nodes) in sorted(by_policy.items())]
        keys = sorted({key for pid in by_policy for key in policies_of(pid)})
        cause = (f"AuthorizationPolicies on the ExternalService {host} deny calls to it: the "
                 "callers' own sidecars answer 403, the requests never leave the mesh.")
        fix = (f"if these callers should reach {host}, allow them (an ALLOW rule naming them) "
               "or narrow the DENY rule; the 403's body names the policy that denied")
        severity = Severity.WARNING
        if started := _changes(evidence, keys):
            change = started[0]
            lines.append(f"changed {when(change.at)}: revision {change.revision}, "
                         f"{change_name(change)} {diff_summary(change)}")
            cause += f" The denials started with a change to {change_name(change)}."
            fix = rollback_fix(change) + "; or " + fix
            severity = Severity.ERROR
        nodes = sorted({n for _, callers in by_policy.values() for n in callers})
        yield Finding(
            "TUL1028", severity, impact(total, total, base=55),
            resource_subject(keys[0]) if keys else proxy_subject(nodes[0]), cause,
            tuple(lines), fix,
            related=(*(resource_subject(k) for k in keys[1:]),
                     *(proxy_subject(n) for n in nodes)),
            sources=tuple(proxy_subject(n) for n in nodes))


def egress_would_deny(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1029, out of the mesh: a dry-run AuthorizationPolicy on an ExternalService would
    deny calls to it if it were promoted."""
    for host, by_policy in sorted(_egress_counts(evidence, AUTHZ_WOULD_DENY).items()):
        total = sum(n for n, _ in by_policy.values())
        lines = [f"{describe_id(pid)}: would deny {n} requests of "
                 f"{', '.join(_caller(evidence, node) for node in nodes)}"
                 for pid, (n, nodes) in sorted(by_policy.items())]
        keys = sorted({key for pid in by_policy for key in policies_of(pid)})
        trying = [k for k in keys if (r := evidence.mesh.resources.get(k)) is not None
                  and getattr(r.spec, "mode", "") == "DryRun"]
        names = ", ".join(f"{k.namespace}/{k.name}" for k in trying) or "the dry-run policy"
        nodes = sorted({n for _, callers in by_policy.values() for n in callers})
        yield Finding(
            "TUL1029", Severity.WARNING, min(70.0, 30.0 + total),
            resource_subject(trying[0]) if trying else proxy_subject(nodes[0]),
            f"Promoting {names} would deny calls to the ExternalService {host} that leave "
            "the mesh today (dry run: nothing is denied yet).",
            tuple(lines),
            "check that these callers should be denied before `tulle policy promote`; else "
            "change the rules (they stay in dry run) and watch `tulle stat` again",
            related=(*(resource_subject(k) for k in keys), *(proxy_subject(n) for n in nodes)),
            sources=tuple(proxy_subject(n) for n in nodes))


def would_deny(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1029: a dry-run AuthorizationPolicy would deny calls if it were promoted."""
    for ref, by_policy in sorted(_counts(evidence, AUTHZ_WOULD_DENY).items()):
        total = sum(n for n, _ in by_policy.values())
        lines = [f"{describe_id(pid)}: would deny {n} requests at {', '.join(nodes)}"
                 for pid, (n, nodes) in sorted(by_policy.items())]
        callers = evidence.callers_of(ref)
        if callers:
            lines.append("callers in the window: " + ", ".join(
                _caller(evidence, node) for node in callers))
        keys = sorted({key for pid in by_policy for key in policies_of(pid)})
        trying = [k for k in keys if (r := evidence.mesh.resources.get(k)) is not None
                  and getattr(r.spec, "mode", "") == "DryRun"]
        names = ", ".join(f"{k.namespace}/{k.name}" for k in trying) or "the dry-run policy"
        yield Finding(
            "TUL1029", Severity.WARNING, min(70.0, 30.0 + total),
            resource_subject(trying[0]) if trying else service_subject(ref),
            f"Promoting {names} would deny calls to {ref.host} that are answered today "
            "(dry run: nothing is denied yet).",
            tuple(lines),
            "check that these callers should be denied before `tulle policy promote`; else "
            "change the rules (they stay in dry run) and watch `tulle stat` again",
            related=(service_subject(ref), *(resource_subject(k) for k in keys)),
            sources=tuple(proxy_subject(n) for n in callers))


RULES = (denied, would_deny, egress_denied, egress_would_deny)
