"""AuthorizationPolicy to Envoy's RBAC filters, on the callee's inbound listener (and, for
ExternalServices, on the caller's outbound listener: ``egress_rbac_filter``).

Every decision is made by one RBAC filter whose action is DENY, so that Envoy names the policy
that denied a request (``rbac_access_denied_matched_policy[ID]`` in the response details, which
the 403's body shows):
- each DENY rule is a policy of its own, ``AuthorizationPolicy:<ns>/<name>:<rule>``;
- when ALLOW rules apply, one more policy denies what none of them matches,
  ``no-ALLOW-rule-matched:<the ALLOW policies>``; when only a default deny applies, one denies
  everything, ``default-deny:<policy>``.
Envoy tries policies in the order of their IDs, so an explicit DENY (upper-case "A") is the one
named when both it and the ALLOW check would deny.

Callers and requests are both RBAC principals (a principal can match headers and the path), so
"none of the ALLOW rules matches" is one principal: not(any(rule)). A rule's ``ports`` are
decided here, per proxy: a sidecar serves one port, so an operation for other ports never
matches on it and is left out. A TCP service's network filter sees no requests: a DENY rule
that names paths, methods or headers denies the whole connection there, and such an ALLOW rule
allows nothing (both fail closed; ``tulle analyze`` reports them).
"""

from __future__ import annotations

import re

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from tulle.model.authorization import Callers, ResolvedRule, ServiceAuthz
from tulle.model.authz import Operation
from tulle.model.egress_authz import EgressAuthz, HostGuard
from tulle.model.httproute import PathMatch
from tulle.model.paths import segment_prefix
from tulle.xds.generators.common import pack
from tulle.xds.generators.matchers import header_matcher

HTTP_RBAC = "envoy.filters.http.rbac"
# The caller's filter for ExternalServices, in its outbound listener; its stats are
# http.outbound.egress_rbac.policy.ID.denied (and egress_rbac.dry_run_ for shadow rules).
EGRESS_RBAC = "tulle.egress.rbac"
EGRESS_STAT_PREFIX = "egress_"
NETWORK_RBAC = "envoy.filters.network.rbac"
# Shadow rules (DryRun policies): their stats are rbac.dry_run_.shadow_allowed|shadow_denied.
DRY_RUN_PREFIX = "dry_run_"
DENIED_BODY = "access denied (tulle authorization): %RESPONSE_CODE_DETAILS%\n"
DENIED_BODY_PLAIN = "access denied\n"

_ANY = rbac_pb2.Principal(any=True)
XFCC = "x-forwarded-client-cert"
_NONE = rbac_pb2.Principal(not_id=_ANY)


def http_rbac_filter(authz: ServiceAuthz, port: int) -> hcm.HttpFilter:
    config = http_rbac_pb2.RBAC(rules=_rules(authz, port, http=True), track_per_rule_stats=True)
    if authz.dry_run is not None:
        config.shadow_rules.CopyFrom(_rules(authz.dry_run, port, http=True))
        config.shadow_rules_stat_prefix = DRY_RUN_PREFIX
    return hcm.HttpFilter(name=HTTP_RBAC, typed_config=pack(config))


def egress_rbac_filter(authz: EgressAuthz) -> hcm.HttpFilter:
    """The caller's side, for AuthorizationPolicies on ExternalServices (egress_authz.py): the
    callers are decided per proxy, so each policy holds the host and the request's details."""
    config = http_rbac_pb2.RBAC(rules=_egress_rules(authz.guards), track_per_rule_stats=True,
                                rules_stat_prefix=EGRESS_STAT_PREFIX)
    if authz.dry_run is not None:
        config.shadow_rules.CopyFrom(_egress_rules(authz.dry_run))
        config.shadow_rules_stat_prefix = EGRESS_STAT_PREFIX + DRY_RUN_PREFIX
    return hcm.HttpFilter(name=EGRESS_RBAC, typed_config=pack(config))


def _egress_rules(guards: tuple[HostGuard, ...]) -> rbac_pb2.RBAC:
    policies: dict[str, rbac_pb2.Policy] = {}
    for guard in guards:
        for policy_id, operations in guard.deny:
            policies[policy_id] = _policy(_all_of([
                _host(guard.host), _egress_operations(guard, operations)]))
        if guard.allow_id:
            allowed = [_egress_operations(guard, operations) for operations in guard.allowed]
            unmatched = rbac_pb2.Principal(not_id=_any_of(allowed)) if allowed else _ANY
            policies[guard.allow_id] = _policy(_all_of([_host(guard.host), unmatched]))
    return rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY, policies=policies)


def _host(host: str) -> rbac_pb2.Principal:
    """A request to ``host``: every authority the host's scope takes, which is the host up to
    the first ":" whatever follows (a port, or anything a client writes there)."""
    return rbac_pb2.Principal(header=rc.HeaderMatcher(
        name=":authority", string_match=string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=f"{re.escape(host)}(:.*)?"))))


def _egress_operations(guard: HostGuard, operations: tuple[Operation, ...]
                       ) -> rbac_pb2.Principal:
    """Any of ``operations`` (none: any request). A port is the one a CONNECT names, or for
    a plain request the host's http port, where every plain request goes."""
    if not operations:
        return _ANY
    out = []
    for operation in operations:
        parts = [_operation(operation)]
        if operation.ports:
            parts.append(_any_of([_egress_port(guard, port) for port in operation.ports]))
        out.append(_all_of(parts))
    return _any_of(out)


def _egress_port(guard: HostGuard, port: int) -> rbac_pb2.Principal:
    connect = rbac_pb2.Principal(header=rc.HeaderMatcher(
        name=":authority", string_match=string_pb2.StringMatcher(exact=f"{guard.host}:{port}")))
    if port != guard.http_port:
        return connect
    plain = rbac_pb2.Principal(not_id=rbac_pb2.Principal(header=rc.HeaderMatcher(
        name=":method", string_match=string_pb2.StringMatcher(exact="CONNECT"))))
    return _any_of([connect, plain])


def network_rbac_filter(authz: ServiceAuthz, port: int, stat_prefix: str
                        ) -> listener_components_pb2.Filter:
    config = network_rbac_pb2.RBAC(stat_prefix=stat_prefix, rules=_rules(authz, port, http=False))
    if authz.dry_run is not None:
        config.shadow_rules.CopyFrom(_rules(authz.dry_run, port, http=False))
        config.shadow_rules_stat_prefix = DRY_RUN_PREFIX
    return listener_components_pb2.Filter(name=NETWORK_RBAC, typed_config=pack(config))


def denied_reply(authz: ServiceAuthz | EgressAuthz) -> hcm.ResponseMapper:
    """The 403 of a denied request: its body names the policy (unless the Mesh says not to)."""
    body = DENIED_BODY if authz.reveal else DENIED_BODY_PLAIN
    # Only the RBAC filter's own denials: Envoy's response-flag filter cannot name RBAC's flag.
    denied = accesslog_pb2.AccessLogFilter(extension_filter=accesslog_pb2.ExtensionFilter(
        name="envoy.access_loggers.extension_filters.cel",
        typed_config=pack(cel_pb2.ExpressionFilter(
            expression="response.code_details.startsWith('rbac_access_denied')"))))
    return hcm.ResponseMapper(
        filter=denied,
        status_code=wrappers_pb2.UInt32Value(value=403),
        body_format_override=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string=body)))


def _rules(authz: ServiceAuthz, port: int, http: bool) -> rbac_pb2.RBAC:
    policies: dict[str, rbac_pb2.Policy] = {}
    for rule in authz.deny:
        principal = _rule(rule, authz.trust_domain, port, http, deny=True)
        if principal is not None:
            policies[f"AuthorizationPolicy:{rule.policy}:{rule.rule}"] = _policy(principal)
    if authz.allow:
        allowed = [p for rule in authz.allow
                   if (p := _rule(rule, authz.trust_domain, port, http, deny=False)) is not None]
        unmatched = rbac_pb2.Principal(not_id=_any_of(allowed)) if allowed else _ANY
        policies["no-ALLOW-rule-matched:" + ",".join(authz.allow_policies)] = _policy(unmatched)
    elif authz.default_deny is not None:
        policies[f"default-deny:{authz.default_deny}"] = _policy(_ANY)
    return rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY, policies=policies)


def _policy(principal: rbac_pb2.Principal) -> rbac_pb2.Policy:
    return rbac_pb2.Policy(permissions=[rbac_pb2.Permission(any=True)], principals=[principal])


def _rule(rule: ResolvedRule, trust_domain: str, port: int, http: bool, deny: bool
          ) -> rbac_pb2.Principal | None:
    """The principal matching ``rule`` on this port, or None when it can never match. The
    request's operations are tested before its caller: a header is cheaper to read than the
    peer certificate's names, which Envoy reads again for each caller a rule names."""
    parts = []
    if rule.operations:
        operations = []
        for operation in rule.operations:
            if operation.ports and port not in operation.ports:
                continue
            if not http and operation.http_only:
                if not deny:
                    continue  # an ALLOW that needs a request's details allows no connection
                operations.append(_ANY)  # a DENY holds for the whole connection
                continue
            operations.append(_operation(operation))
        if not operations:
            return None
        parts.append(_any_of(operations))
    if rule.callers:
        parts.append(_any_of([_caller(c, trust_domain, http) for c in rule.callers]))
    return _all_of(parts)


def _caller(callers: Callers, trust_domain: str, http: bool = False) -> rbac_pb2.Principal:
    """``http``: on the inbound HTTP side, whose connection manager has just set
    x-forwarded-client-cert from the verified peer certificate (SANITIZE_SET: whatever the
    caller sent is dropped; on a plaintext connection nothing is set). A caller's identity is
    then the end of that header, ``;URI=ID``, read once from the request's headers: Envoy's
    ``authenticated`` principal reads the certificate's names again for every identity a rule
    names (measured: 100 one-identity rules added a fifth to a pair's p50)."""
    if callers.namespace is not None:
        pattern = (f"spiffe://{re.escape(trust_domain)}/ns/{re.escape(callers.namespace)}"
                   "/sa/[a-z0-9-]+")
        return _authenticated(string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=pattern)))
    if not callers.identities:
        return _NONE  # no mesh identity (no CA): nobody is that caller
    if http:
        return _any_of([rbac_pb2.Principal(header=rc.HeaderMatcher(
            name=XFCC, string_match=string_pb2.StringMatcher(suffix=f";URI={identity}")))
            for identity in callers.identities])
    return _any_of([_authenticated(string_pb2.StringMatcher(exact=identity))
                    for identity in callers.identities])


def _authenticated(name: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=name))


def _operation(operation: Operation) -> rbac_pb2.Principal:
    parts = []
    if operation.paths:
        parts.append(_any_of([p for path in operation.paths for p in _path(path)]))
    if operation.methods:
        parts.append(_any_of([rbac_pb2.Principal(header=rc.HeaderMatcher(
            name=":method", string_match=string_pb2.StringMatcher(exact=method)))
            for method in operation.methods]))
    for header in operation.headers:
        parts.append(rbac_pb2.Principal(
            header=header_matcher(header.name, header.value, header.type)))
    return _all_of(parts)


def _path(path: PathMatch) -> list[rbac_pb2.Principal]:
    """The path without its query, as routes match it; a prefix matches whole segments."""
    def url(matcher: string_pb2.StringMatcher) -> rbac_pb2.Principal:
        return rbac_pb2.Principal(url_path=path_pb2.PathMatcher(path=matcher))

    if path.type == "Exact":
        return [url(string_pb2.StringMatcher(exact=path.value))]
    if path.type == "RegularExpression":
        return [url(string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(
            regex=path.value)))]
    prefix = segment_prefix(path.value)
    if prefix == "/":
        return [url(string_pb2.StringMatcher(prefix="/"))]
    return [url(string_pb2.StringMatcher(exact=prefix)),
            url(string_pb2.StringMatcher(prefix=prefix + "/"))]


def _any_of(principals: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not principals:
        return _ANY
    if len(principals) == 1:
        return principals[0]
    return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=principals))


def _all_of(principals: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not principals:
        return _ANY
    if len(principals) == 1:
        return principals[0]
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=principals))
