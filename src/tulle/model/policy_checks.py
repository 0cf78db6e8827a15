"""Checks on one TrafficPolicy beyond its schema: targets, durations, combinations."""

from __future__ import annotations

from collections.abc import Iterator

from tulle.model.durations import DURATION_HINT, parse_duration
from tulle.model.meta import dns_label_problem
from tulle.model.policy import SERVICE_ONLY, TrafficPolicySpec
from tulle.model.route_checks import (
    duration_problem,
    header_match_problems,
    header_name_problem,
)
from tulle.model.spec_config import to_camel

FieldIssue = tuple[str, str, str]


def policy_problems(spec: TrafficPolicySpec) -> Iterator[FieldIssue]:
    yield from _targets(spec)
    yield from _dry_run(spec)
    if not any(getattr(spec, field) is not None for field in (
            *SERVICE_ONLY, "rate_limit", "fault_injection")):
        yield "spec", "the policy sets nothing", "add connectionPool, rateLimit, ..."
    yield from _durations(spec)
    yield from _balancer(spec)
    yield from _fault(spec)
    limit = spec.rate_limit
    if limit is not None and limit.burst is not None and limit.burst < limit.requests:
        yield ("spec.rateLimit.burst", f"a burst of {limit.burst} would cap every interval at "
               f"{limit.burst} requests, below requests ({limit.requests})",
               f"set burst to at least {limit.requests}, or lower requests")


def _dry_run(spec: TrafficPolicySpec) -> Iterator[FieldIssue]:
    if spec.mode != "DryRun":
        return
    others = [to_camel(f) for f in (*SERVICE_ONLY, "fault_injection")
              if getattr(spec, f) is not None]
    if spec.rate_limit is None or others:
        yield ("spec.mode", "a dry run applies to a rateLimit alone" + (
            f", not to {', '.join(others)}" if others else ""),
            "put the rate limit to try in a TrafficPolicy of its own, with mode: DryRun")


def _targets(spec: TrafficPolicySpec) -> Iterator[FieldIssue]:
    for t, target in enumerate(spec.target_refs):
        where = f"spec.targetRefs[{t}]"
        if (why := dns_label_problem(target.name)) is not None:
            yield f"{where}.name", why, ""
        if target.kind == "HTTPRoute":
            if target.group != "gateway.networking.k8s.io":
                yield (f"{where}.group", "an HTTPRoute target needs group "
                                         "gateway.networking.k8s.io", "")
            for field in SERVICE_ONLY:
                if getattr(spec, field) is not None:
                    yield (f"spec.{to_camel(field)}",
                           f"{to_camel(field)} applies to a Service, not to an HTTPRoute",
                           "target the route's backend Service in a separate TrafficPolicy")
            continue
        if target.group not in ("", "core"):
            yield f"{where}.group", 'a Service target needs group "" (core)', ""
        if target.section_name is not None:
            yield (f"{where}.sectionName", "sectionName selects a rule of an HTTPRoute",
                   "remove it, or target the HTTPRoute")


def _balancer(spec: TrafficPolicySpec) -> Iterator[FieldIssue]:
    balancer = spec.load_balancer
    if balancer is None:
        return
    keys = balancer.hash_key
    count = 0 if keys is None else sum(
        v is not None and v is not False for v in (keys.header, keys.cookie, keys.source_ip))
    if balancer.algorithm == "RingHash" and count != 1:
        yield ("spec.loadBalancer.hashKey", "RingHash needs exactly one hash key",
               "set one of header, cookie or sourceIP: true")
    elif balancer.algorithm != "RingHash" and keys is not None:
        yield ("spec.loadBalancer.hashKey", "a hash key is used only with RingHash",
               "set algorithm: RingHash, or remove hashKey")
    if keys is not None and keys.header is not None and \
            (why := header_name_problem(keys.header, modifying=False)) is not None:
        yield "spec.loadBalancer.hashKey.header", why, ""


def _fault(spec: TrafficPolicySpec) -> Iterator[FieldIssue]:
    fault = spec.fault_injection
    if fault is None:
        return
    if fault.delay is None and fault.abort is None:
        yield "spec.faultInjection", "set delay, abort, or both", ""
    for h, header in enumerate(fault.match.headers if fault.match else ()):
        yield from header_match_problems(f"spec.faultInjection.match.headers[{h}]", header)


def _durations(spec: TrafficPolicySpec) -> Iterator[FieldIssue]:
    values: list[tuple[str, str | None]] = []
    if spec.outlier_detection is not None:
        values += [("spec.outlierDetection.interval", spec.outlier_detection.interval),
                   ("spec.outlierDetection.baseEjectionTime",
                    spec.outlier_detection.base_ejection_time)]
    if spec.rate_limit is not None:
        values.append(("spec.rateLimit.interval", spec.rate_limit.interval))
    if spec.fault_injection is not None and spec.fault_injection.delay is not None:
        values.append(("spec.faultInjection.delay.fixedDelay",
                       spec.fault_injection.delay.fixed_delay))
    if spec.timeouts is not None:
        values += [("spec.timeouts.connect", spec.timeouts.connect),
                   ("spec.timeouts.idle", spec.timeouts.idle)]
    for field, value in values:
        seconds = parse_duration(value) if value is not None else None
        if (why := duration_problem(value)) is not None:
            yield field, why, DURATION_HINT
        elif value is not None and not seconds and \
                field.endswith(("interval", "connect", "EjectionTime", "fixedDelay")):
            yield field, "must be more than 0", ""
        elif field == "spec.rateLimit.interval" and seconds is not None and seconds < 0.05:
            yield field, f"must be at least 50ms, got {value}", \
                "Envoy refills token buckets at most every 50 ms; raise requests instead"
