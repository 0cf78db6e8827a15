"""One call through the config in force, step by step, on both proxies, without sending it.

The caller's sidecar: which table the host picks (a mesh service, an ExternalService, or no
scope: the outbound mode decides), the route rule the request matches (matching.py), what its
filters do, the backends and weights, timeouts, retries, rate limits and faults, and egress
authorization. The callee's sidecar: the AuthorizationPolicy decision (authz.py), enforced and
in dry run, and its service-wide rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tulle.errors import NotFoundError, UsageError
from tulle.identity.spiffe import spiffe_id
from tulle.model.external import MeshExternal
from tulle.model.httproute import RouteRule
from tulle.model.mesh import MeshService, MeshSnapshot
from tulle.model.meta import ServiceRef, dns_label_problem
from tulle.model.paths import prefix_rewrite
from tulle.model.policy import FaultInjection, RateLimit
from tulle.model.workload import Workload
from tulle.whatif.authz import denied_by
from tulle.whatif.matching import Request, RuleMatch, rule_for
from tulle.whatif.trials import decide
from tulle.xds.generators.route_actions import SAFE_RETRIES, SAFE_RETRY_ON
from tulle.xds.generators.routes import DEFAULT_ROUTE_TIMEOUT_S


@dataclass
class Step:
    step: str
    result: str
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "result": self.result, "details": self.details}


@dataclass
class WhatIf:
    caller: str
    request: Request
    steps: list[Step] = field(default_factory=list)
    outcome: str = ""

    def add(self, step: str, result: str, *details: str) -> None:
        self.steps.append(Step(step, result, [d for d in details if d]))

    def to_dict(self) -> dict[str, Any]:
        return {"caller": self.caller, "method": self.request.method,
                "path": self.request.path, "steps": [s.to_dict() for s in self.steps],
                "outcome": self.outcome}


@dataclass(frozen=True)
class Caller:
    node: str  # a workload's node id, or "SERVICE.NAMESPACE (any instance)"
    namespace: str
    identity: str


def resolve_caller(mesh: MeshSnapshot, text: str, namespace: str) -> Caller:
    """``SERVICE`` or ``SERVICE/WORKLOAD`` in ``namespace``."""
    service, _, name = text.partition("/")
    for what, value in (("service", service), ("workload", name or service),
                        ("namespace", namespace)):
        if (why := dns_label_problem(value)) is not None:
            raise UsageError(f"--from {text!r}: the {what} {why}",
                             hint="--from SERVICE or SERVICE/WORKLOAD, as `tulle get "
                                  "workloads` lists them")
    trust_domain = mesh.identity.trust_domain
    workload: Workload | None = None
    if name:
        workload = mesh.workloads.get(f"{name}.{namespace}")
        if workload is None or workload.service != service:
            raise NotFoundError(f"no workload {name} of service {service} in namespace "
                                f"{namespace}", hint="`tulle get workloads` lists them")
    else:
        workload = next((w for w in mesh.workloads.values()
                         if w.namespace == namespace and w.service == service), None)
        if workload is None and ServiceRef(namespace, service) not in mesh.services:
            raise NotFoundError(f"no service {service} in namespace {namespace}",
                                hint="name the caller: --from SERVICE[/WORKLOAD]")
    account = workload.account if workload is not None else service
    identity = spiffe_id(trust_domain, namespace, account) if trust_domain else ""
    node = workload.node_id if workload is not None else f"{service}.{namespace} (any)"
    return Caller(node, namespace, identity)


def parse_url(url: str) -> tuple[str, str]:
    """(host as the application names it, path with query) of ``http://HOST[:PORT]/PATH``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--to {url!r} is not an http:// URL",
                         hint="for example --to http://books/list?page=2")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.netloc, path


def what_if(mesh: MeshSnapshot, caller: Caller, url: str, method: str,
            headers: tuple[tuple[str, str], ...]) -> WhatIf:
    authority, path = parse_url(url)
    request = Request(method.upper(), path, headers)
    out = WhatIf(caller.node, request)
    out.add("caller", caller.node, f"identity {caller.identity or '(none: no CA)'}",
            f"namespace {caller.namespace}")
    host = authority.rsplit(":", 1)[0] if not authority.startswith("[") else authority
    service = _service_named(mesh, host, caller.namespace)
    if service is not None:
        _mesh_call(mesh, caller, service, request, out)
        return out
    external = mesh.externals.get(host)
    if external is not None:
        _external_call(mesh, caller, external, authority, request, out)
        return out
    mode = mesh.settings.outbound.mode
    if mode == "ALLOW_ANY":
        out.add("host", f"{host}: outside the mesh, passed through (outbound mode ALLOW_ANY)",
                "the dynamic forward proxy resolves the host and connects to the port named")
        out.outcome = f"sent to {authority} directly, no policy applies"
    else:
        out.add("host", f"{host}: neither a mesh service nor an ExternalService",
                "outbound mode REGISTRY_ONLY: the caller's sidecar refuses it")
        out.outcome = "502 from the caller's sidecar: the host is not in the registry"
    return out


def _service_named(mesh: MeshSnapshot, host: str, namespace: str) -> MeshService | None:
    name, _, owner = host.partition(".")
    if owner and "." in owner:
        return None
    return mesh.services.get(ServiceRef(owner or namespace, name))


def _mesh_call(mesh: MeshSnapshot, caller: Caller, service: MeshService, request: Request,
               out: WhatIf) -> None:
    ref = service.ref
    out.add("host", f"mesh service {ref.host}", f"protocol {service.protocol}"
            + (" (detected)" if service.detected else ""))
    if service.protocol == "tcp":
        out.outcome = "400 from the caller's sidecar: a tcp service is reached with CONNECT"
        return
    trial = mesh.route_trials.get(ref)
    if trial is not None:
        tried = ", ".join(f"{k.namespace}/{k.name}" for k in trial.trying)
        out.add("route in dry run", decide(ref, trial, request).describe(),
                f"HTTPRoute {tried} in dry run: callers do not route by it yet")
    attached = mesh.routes.get(ref, ())
    policy = service.policy
    if not attached:
        out.add("route", "the default route (no HTTPRoute is attached)")
        targets = [(ref, 1)]
        _resilience(out, None, policy.fault_injection, None, None)
    else:
        found = rule_for(attached, request)
        if found is None:
            rules = "; ".join(f"{a.key.namespace}/{a.key.name} rule {r.name or i}: "
                              f"{r.describe_matches()}"
                              for a in attached for i, r in enumerate(a.spec.rules))
            out.add("route", "none: no rule matches the request", f"rules: {rules}")
            out.outcome = "404 from the caller's sidecar (NR): no route rule matches"
            return
        rule = found.route.spec.rules[found.rule]
        out.add("route", f"rule {found.rule_name} of HTTPRoute {found.route.key.namespace}/"
                         f"{found.route.key.name}",
                f"match {found.match}: {_describe_match(rule, found.match)}")
        if _filters(out, rule, found, request):
            return
        namespace = found.route.key.namespace
        targets = [(ServiceRef(b.namespace or namespace, b.name), b.weight)
                   for b in rule.backend_refs if b.weight > 0]
        rule_policy = found.route.rule_policy(found.rule)
        _resilience(out, rule, rule_policy.fault_injection or policy.fault_injection,
                    rule_policy.rate_limit, found)
    if not targets:
        out.outcome = "500 from the caller's sidecar: the rule has no backend with weight"
        return
    total = sum(weight for _, weight in targets)
    shares = []
    for target, weight in targets:
        ready = mesh.endpoints_of(target)
        shares.append(f"{target.host}: weight {weight} ({100 * weight / total:.0f} %), "
                      f"{len(ready)} ready instance{'s' if len(ready) != 1 else ''}")
    out.add("backends", ", ".join(t.host for t, _ in targets), *shares)
    first = targets[0][0]
    callee = mesh.services.get(first)
    if callee is not None:
        if callee.policy.rate_limit is not None:
            out.add("callee rate limit", _limit(callee.policy.rate_limit),
                    "enforced by each instance's sidecar (429 past it)")
        if callee.policy.dry_run_rate_limit is not None:
            out.add("callee rate limit (dry run)", _limit(callee.policy.dry_run_rate_limit),
                    "counted, never enforced")
    if _authorization(mesh, caller, targets, request, out):
        return
    reachable = [t.host for t, _ in targets if mesh.endpoints_of(t)]
    out.outcome = (f"sent to {' or '.join(reachable)} over "
                   f"{'mutual TLS' if mesh.identity.trust_domain else 'plaintext'}"
                   if reachable else "503 from the caller's sidecar: no ready instance")


def _describe_match(rule: RouteRule, index: int) -> str:
    match = rule.matches[index]
    text = f"{match.path.type} {match.path.value}"
    if match.method:
        text = f"{match.method} {text}"
    text += "".join(f" header {h.name} {h.type} {h.value!r}" for h in match.headers)
    text += "".join(f" query {q.name} {q.type} {q.value!r}" for q in match.query_params)
    return text


def _filters(out: WhatIf, rule: RouteRule, found: RuleMatch, request: Request) -> bool:
    """The rule's filters; True when the request ends here (a redirect)."""
    match = rule.matches[found.match]
    details = []
    for item in rule.filters:
        if item.request_redirect is not None:
            redirect = item.request_redirect
            location = redirect.hostname or "(same host)"
            if redirect.path is not None:
                location += " path " + (redirect.path.replace_full_path or _rewritten(
                    match.path.value, redirect.path.replace_prefix_match or "/",
                    request.bare_path))
            out.add("filters", f"RequestRedirect {redirect.status_code}", location)
            out.outcome = f"{redirect.status_code} redirect from the caller's sidecar"
            return True
        if item.url_rewrite is not None:
            rewrite = item.url_rewrite
            if rewrite.hostname:
                details.append(f"URLRewrite: host becomes {rewrite.hostname}")
            if rewrite.path is not None:
                new = rewrite.path.replace_full_path or _rewritten(
                    match.path.value, rewrite.path.replace_prefix_match or "/",
                    request.bare_path)
                details.append(f"URLRewrite: path {request.bare_path} becomes {new}")
        for label, modifier in (("request", item.request_header_modifier),
                                ("response", item.response_header_modifier)):
            if modifier is not None:
                changes = [f"set {p.name}: {p.value}" for p in modifier.set]
                changes += [f"add {p.name}: {p.value}" for p in modifier.add]
                changes += [f"remove {n}" for n in modifier.remove]
                details.append(f"{label} headers: {', '.join(changes)}")
        if item.request_mirror is not None:
            mirror = item.request_mirror
            share = mirror.percent if mirror.percent is not None else (
                100 * mirror.fraction.numerator / mirror.fraction.denominator
                if mirror.fraction else 100)
            details.append(f"mirror {share:g} % to {mirror.backend_ref.name} (answers ignored)")
    out.add("filters", "none" if not details else f"{len(details)}", *details)
    return False


def _rewritten(prefix: str, replacement: str, path: str) -> str:
    import re2

    pattern, substitution = prefix_rewrite(prefix, replacement)
    return str(re2.sub(pattern, substitution, path, count=1))


def _resilience(out: WhatIf, rule: RouteRule | None, fault: FaultInjection | None,
                limit: RateLimit | None, found: RuleMatch | None) -> None:
    timeouts = rule.timeouts if rule is not None else None
    request_timeout = timeouts.request if timeouts and timeouts.request else \
        f"{DEFAULT_ROUTE_TIMEOUT_S:g}s (Envoy's default)"
    retry = rule.retry if rule is not None else None
    retries = (f"up to {SAFE_RETRIES} on {SAFE_RETRY_ON} (the request never reached an "
               "application)") if retry is None else (
        f"up to {retry.attempts} on {', '.join(map(str, retry.codes)) or '5xx'}"
        + (f", gRPC {', '.join(retry.grpc_codes)}" if retry.grpc_codes else ""))
    per_try = timeouts.backend_request if timeouts and timeouts.backend_request else None
    out.add("timeouts and retries", f"timeout {request_timeout}, retries {retries}",
            f"per try {per_try}" if per_try else "")
    if limit is not None:
        out.add("rate limit", _limit(limit), "in the caller's sidecar, for this rule (429)")
    if fault is not None:
        parts = []
        if fault.abort is not None:
            parts.append(f"abort {fault.abort.percent:g} % with {fault.abort.http_status}")
        if fault.delay is not None:
            parts.append(f"delay {fault.delay.percent:g} % by {fault.delay.fixed_delay}")
        out.add("fault injection", ", ".join(parts), "from a TrafficPolicy")


def _limit(limit: RateLimit) -> str:
    return f"{limit.requests} requests per {limit.interval}" + (
        f", burst {limit.burst}" if limit.burst else "")


def _authorization(mesh: MeshSnapshot, caller: Caller, targets: list[tuple[ServiceRef, int]],
                   request: Request, out: WhatIf) -> bool:
    """The callee's decision; True when it denies (the outcome is set)."""
    denied_any = None
    for target, _ in targets:
        authz = mesh.authz.get(target)
        if authz is None:
            out.add("authorization", f"{target.host}: allowed (no AuthorizationPolicy)")
            continue
        ports = sorted({e.port for e in mesh.endpoints_of(target)} or {0})
        app_ports = sorted({w.app_port for w in mesh.workloads.values()
                            if w.service_ref == target and w.app_port} or {0})
        port = app_ports[0] if app_ports else ports[0]
        denied = denied_by(authz, caller.identity, request, port)
        shadow = denied_by(authz.dry_run, caller.identity, request, port) \
            if authz.dry_run is not None else None
        result = f"{target.host}: denied by {denied}" if denied else f"{target.host}: allowed"
        out.add("authorization", result,
                f"dry run: would be denied by {shadow}" if shadow and not denied else
                "dry run: would be allowed" if authz.dry_run is not None else "",
                f"decided at port {port}" if port else "")
        denied_any = denied_any or denied
    if denied_any:
        out.outcome = f"403 from the callee's sidecar: {denied_any}"
        return True
    return False


def _external_call(mesh: MeshSnapshot, caller: Caller, external: MeshExternal,
                   authority: str, request: Request, out: WhatIf) -> None:
    spec = external.spec
    out.add("host", f"ExternalService {external.ref.namespace}/{external.ref.name}",
            f"ports: {', '.join(f'{p.port}/{p.protocol}' for p in spec.ports)}")
    http_port = spec.http_port
    if request.method == "CONNECT":
        port = int(authority.rsplit(":", 1)[1]) if ":" in authority else 0
        if port not in {p.port for p in spec.ports}:
            out.outcome = "502 from the caller's sidecar: no such port"
            return
    elif http_port is None:
        out.outcome = "400 from the caller's sidecar: no http port; use CONNECT"
        return
    else:
        port = http_port
    tls = " with TLS originated by the sidecar" if spec.tls and port == http_port else ""
    out.add("egress", f"to {spec.dial}:{port}{tls}",
            f"verified against the ExternalService's CA bundle as {spec.server_name}"
            if tls else "")
    authz = mesh.external_authz.get(spec.host)
    if authz is not None:
        denied = denied_by(authz, caller.identity, request, port)
        out.add("egress authorization", f"denied by {denied}" if denied else "allowed",
                "enforced by the caller's own sidecar")
        if denied:
            out.outcome = f"403 from the caller's sidecar: {denied}"
            return
    out.outcome = f"sent to {spec.host}:{port} (outside the mesh){tls}"
