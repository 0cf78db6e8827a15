"""Checks on one AuthorizationPolicy beyond its schema: the form, callers, paths, regexes.

Whatever passes here is something Envoy's RBAC filter accepts: regexes are compiled with RE2
as Envoy does (route_checks.regex_problem).
"""

from __future__ import annotations

from collections.abc import Iterator

from tulle.identity.spiffe import parse as parse_spiffe
from tulle.model.authz import AuthorizationPolicySpec, Caller, Operation
from tulle.model.meta import dns_label_problem
from tulle.model.route_checks import header_match_problems, path_match_problems

FieldIssue = tuple[str, str, str]


def authz_problems(spec: AuthorizationPolicySpec) -> Iterator[FieldIssue]:
    target = spec.target_ref
    if target.kind in ("Service", "ExternalService"):
        if target.name is None:
            article = "an" if target.kind[0] in "AEIOU" else "a"
            yield "spec.targetRef.name", f"{article} {target.kind} target needs its name", ""
        elif (why := dns_label_problem(target.name)) is not None:
            yield "spec.targetRef.name", why, ""
    elif target.kind == "Mesh" and target.name is not None:
        yield "spec.targetRef.name", "a Mesh target has no name", "remove name"
    yield from _form(spec)
    for r, rule in enumerate(spec.rules):
        for c, caller in enumerate(rule.from_):
            yield from _caller(f"spec.rules[{r}].from[{c}]", caller)
        for o, operation in enumerate(rule.to):
            yield from _operation(f"spec.rules[{r}].to[{o}]", operation)
    names = [rule.name for rule in spec.rules if rule.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield "spec.rules", f'two rules are named "{name}"', "give each rule its own name"


def _form(spec: AuthorizationPolicySpec) -> Iterator[FieldIssue]:
    if spec.default_action is not None:
        if spec.action is not None or spec.rules:
            yield ("spec.defaultAction", "a policy sets either a default (defaultAction) or "
                   "rules with an action, not both", "split it into two policies")
        if spec.target_ref.kind in ("Service", "ExternalService"):
            yield ("spec.defaultAction", "a default applies to a Namespace or the Mesh",
                   "target the namespace (targetRef: {kind: Namespace}), or write ALLOW "
                   "rules for the service: any ALLOW rule denies what it does not match")
        return
    if spec.action is None:
        yield ("spec.action", "set action: ALLOW or DENY (or defaultAction for a default)", "")
    if not spec.rules:
        yield ("spec.rules", "a policy with an action needs at least one rule",
               "add a rule (`{}` matches every request), or use defaultAction: DENY")


def _caller(where: str, caller: Caller) -> Iterator[FieldIssue]:
    given = [v for v in (caller.identity, caller.service, caller.namespace) if v is not None]
    if len(given) != 1:
        yield where, "name exactly one of identity, service or namespace", \
            "write one caller per list item"
        return
    if caller.identity is not None and parse_spiffe(caller.identity) is None:
        yield (f"{where}.identity", f'"{caller.identity}" is not a workload identity',
               "use spiffe://<trust domain>/ns/<namespace>/sa/<service account>, as "
               "`tulle proxy-status` shows it")
    if caller.service is not None:
        for part in caller.service.split("/", 1):
            if (why := dns_label_problem(part)) is not None:
                yield f"{where}.service", why, 'write "name" or "namespace/name"'
                break
    if caller.namespace is not None and (why := dns_label_problem(caller.namespace)):
        yield f"{where}.namespace", why, ""


def _operation(where: str, operation: Operation) -> Iterator[FieldIssue]:
    for p, path in enumerate(operation.paths):
        yield from path_match_problems(f"{where}.paths[{p}]", path, "a path never holds the "
                                       "query string: remove it (paths match without it)")
    for h, header in enumerate(operation.headers):
        yield from header_match_problems(f"{where}.headers[{h}]", header)
