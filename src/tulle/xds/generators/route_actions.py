"""One HTTPRoute rule to Envoy: where requests go and what happens to them on the way.

Backends (weighted), timeouts, retries, mirrors, header changes, rewrites and redirects come
from the rule; fault injection and rate limits from TrafficPolicies; the hash key from the
backends' load balancing.
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from tulle.model.durations import parse_duration
from tulle.model.httproute import (
    HeaderModifier,
    RequestMirror,
    RequestRedirect,
    RouteMatch,
    RouteRule,
)
from tulle.model.meta import ServiceRef
from tulle.model.policy import FaultInjection, HashKey, RateLimit
from tulle.xds import names
from tulle.xds.generators.common import pack, seconds
from tulle.xds.generators.http_filters import per_route
from tulle.xds.generators.matchers import full_path_rewrite, prefix_rewrite_regex

# Retries that are always safe: the request never reached the application.
SAFE_RETRY_ON = "connect-failure,refused-stream,reset-before-request"
SAFE_RETRIES = 2

_REDIRECT_CODES = {301: rc.RedirectAction.MOVED_PERMANENTLY, 302: rc.RedirectAction.FOUND,
                   303: rc.RedirectAction.SEE_OTHER,
                   307: rc.RedirectAction.TEMPORARY_REDIRECT,
                   308: rc.RedirectAction.PERMANENT_REDIRECT}


def rule_route(name: str, match: RouteMatch, envoy_match: rc.RouteMatch, rule: RouteRule,
               namespace: str, fault: FaultInjection | None, rate_limit: RateLimit | None,
               hash_key: HashKey | None, dry_run_rate_limit: RateLimit | None = None,
               dry_run_prefix: str = "") -> rc.Route:
    route = rc.Route(name=name, match=envoy_match)
    filters = {f.type: f for f in rule.filters}
    redirect = filters.get("RequestRedirect")
    if redirect is not None and redirect.request_redirect is not None:
        route.redirect.CopyFrom(_redirect(redirect.request_redirect, match))
    else:
        route.route.CopyFrom(_action(rule, namespace, match, hash_key))
    for item in rule.filters:
        if item.request_header_modifier is not None:
            _modify(item.request_header_modifier, route.request_headers_to_add,
                    route.request_headers_to_remove)
        if item.response_header_modifier is not None:
            _modify(item.response_header_modifier, route.response_headers_to_add,
                    route.response_headers_to_remove)
    for key, config in per_route(fault, rate_limit, dry_run_rate_limit,
                                 dry_run_prefix).items():
        route.typed_per_filter_config[key].CopyFrom(config)
    return route


def default_route(name: str, cluster: str, fault: FaultInjection | None,
                  hash_key: HashKey | None) -> rc.Route:
    """A service without HTTPRoutes: everything to its own cluster."""
    action = rc.RouteAction(cluster=cluster, retry_policy=safe_retries())
    if hash_key is not None:
        action.hash_policy.append(_hash_policy(hash_key))
    route = rc.Route(name=name, match=rc.RouteMatch(prefix="/"), route=action)
    for key, config in per_route(fault, None).items():
        route.typed_per_filter_config[key].CopyFrom(config)
    return route


def safe_retries(num_retries: int = SAFE_RETRIES, retry_on: str = SAFE_RETRY_ON
                 ) -> rc.RetryPolicy:
    return rc.RetryPolicy(
        retry_on=retry_on,
        num_retries=wrappers_pb2.UInt32Value(value=num_retries),
        retry_host_predicate=[rc.RetryPolicy.RetryHostPredicate(
            name="envoy.retry_host_predicates.previous_hosts",
            typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()))],
        host_selection_retry_max_attempts=3,
    )


def _action(rule: RouteRule, namespace: str, match: RouteMatch,
            hash_key: HashKey | None) -> rc.RouteAction:
    backends = [(names.outbound_cluster(ServiceRef(b.namespace or namespace, b.name)), b.weight)
                for b in rule.backend_refs if b.weight > 0]
    if len(backends) == 1:
        action = rc.RouteAction(cluster=backends[0][0])
    else:
        action = rc.RouteAction(weighted_clusters=rc.WeightedCluster(clusters=[
            rc.WeightedCluster.ClusterWeight(name=cluster,
                                             weight=wrappers_pb2.UInt32Value(value=weight))
            for cluster, weight in backends]))
    action.retry_policy.CopyFrom(_retries(rule))
    if rule.timeouts is not None:
        if rule.timeouts.request is not None:
            action.timeout.CopyFrom(seconds(parse_duration(rule.timeouts.request) or 0.0))
        if rule.timeouts.backend_request is not None:
            action.retry_policy.per_try_timeout.CopyFrom(
                seconds(parse_duration(rule.timeouts.backend_request) or 0.0))
    if hash_key is not None:
        action.hash_policy.append(_hash_policy(hash_key))
    for item in rule.filters:
        if item.request_mirror is not None:
            action.request_mirror_policies.append(_mirror(item.request_mirror, namespace))
        if item.url_rewrite is not None:
            if item.url_rewrite.hostname:
                action.host_rewrite_literal = item.url_rewrite.hostname
            path = item.url_rewrite.path
            if path is not None and path.replace_full_path is not None:
                action.regex_rewrite.CopyFrom(full_path_rewrite(path.replace_full_path))
            elif path is not None and path.replace_prefix_match is not None:
                action.regex_rewrite.CopyFrom(prefix_rewrite_regex(match.path.value,
                                                                   path.replace_prefix_match))
    return action


def _retries(rule: RouteRule) -> rc.RetryPolicy:
    retry = rule.retry
    if retry is None:
        return safe_retries()
    conditions = [SAFE_RETRY_ON]
    if retry.codes:
        conditions.append("retriable-status-codes")
    conditions.extend(retry.grpc_codes)  # Envoy's retry_on names them as gRPC does
    if not retry.codes and not retry.grpc_codes:
        conditions.append("5xx")
    policy = safe_retries(retry.attempts, ",".join(conditions))
    policy.retriable_status_codes.extend(retry.codes)
    if retry.backoff is not None:
        base = parse_duration(retry.backoff) or 0.025
        policy.retry_back_off.base_interval.CopyFrom(seconds(base))
        policy.retry_back_off.max_interval.CopyFrom(seconds(base * 10))
    return policy


def _hash_policy(key: HashKey) -> rc.RouteAction.HashPolicy:
    if key.header is not None:
        return rc.RouteAction.HashPolicy(
            header=rc.RouteAction.HashPolicy.Header(header_name=key.header.lower()))
    if key.cookie is not None:
        return rc.RouteAction.HashPolicy(
            cookie=rc.RouteAction.HashPolicy.Cookie(name=key.cookie))
    return rc.RouteAction.HashPolicy(
        connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True))


def _mirror(mirror: RequestMirror, namespace: str) -> rc.RouteAction.RequestMirrorPolicy:
    backend = mirror.backend_ref
    if mirror.fraction is not None:
        millionths = round(mirror.fraction.numerator * 1_000_000 / mirror.fraction.denominator)
    else:
        millionths = (100 if mirror.percent is None else mirror.percent) * 10_000
    return rc.RouteAction.RequestMirrorPolicy(
        cluster=names.outbound_cluster(ServiceRef(backend.namespace or namespace, backend.name)),
        runtime_fraction=base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(
                numerator=millionths, denominator=percent_pb2.FractionalPercent.MILLION)))


def _redirect(redirect: RequestRedirect, match: RouteMatch) -> rc.RedirectAction:
    action = rc.RedirectAction(response_code=_REDIRECT_CODES[redirect.status_code])
    if redirect.scheme is not None:
        action.scheme_redirect = redirect.scheme
    if redirect.hostname is not None:
        action.host_redirect = redirect.hostname
    if redirect.port is not None:
        action.port_redirect = redirect.port
    path = redirect.path
    if path is not None and path.replace_full_path is not None:
        action.path_redirect = path.replace_full_path
    elif path is not None and path.replace_prefix_match is not None:
        action.regex_rewrite.CopyFrom(prefix_rewrite_regex(match.path.value,
                                                           path.replace_prefix_match))
    return action


def _modify(modifier: HeaderModifier, add: Any, remove: Any) -> None:
    """Fill a route's repeated *_headers_to_add and *_headers_to_remove fields."""
    for pair, action in [*((p, base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
                           for p in modifier.set),
                         *((p, base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD)
                           for p in modifier.add)]:
        # Envoy reads "%...%" in header values as substitution commands: "%%" is a literal %.
        add.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=pair.name.lower(),
                                        value=pair.value.replace("%", "%%")),
            append_action=action))
    remove.extend(name.lower() for name in modifier.remove)
