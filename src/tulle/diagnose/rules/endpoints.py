"""Diagnosis rules: endpoints and connections (UH, UF), the instances behind a service.

Envoy's response flags are derived from counters: UH from ``upstream_cx_none_healthy`` and
clusters without a healthy member, UF from connect failures, on the caller's side (to the
service's sidecars) and on the instance's side (sidecar to its own application).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from tulle.diagnose.evidence import Evidence, HostHealth, requests
from tulle.diagnose.model import Finding, Scope, Severity, proxy_subject, service_subject
from tulle.diagnose.rank import impact
from tulle.diagnose.rules._traffic import feeding
from tulle.model.meta import ServiceRef
from tulle.model.workload import WorkloadState

# A workload may take this long to start before "starting" is a finding, not a phase. The
# grace holds only while nobody calls it: callers failing on it are a finding at once.
STARTUP_GRACE_S = 10.0
# With every instance ejected, Envoy's panic mode still sends traffic to them: how bad it is
# comes from what callers saw (share of their requests that failed).
CRITICAL_SHARE, ERROR_SHARE = 0.5, 0.05
CONNECT_ERROR_SHARE = 0.05  # connect failures are an error when this share of calls fail


def _is_tcp(evidence: Evidence, ref: ServiceRef | None) -> bool:
    service = evidence.mesh.services.get(ref) if ref is not None else None
    return service is not None and service.protocol == "tcp"


def _failures_by_caller(evidence: Evidence, ref: ServiceRef) -> list[tuple[str, int, int]]:
    """(caller, requests, 5xx) for every caller of ``ref`` with traffic in the window.

    For a tcp service, (caller, connections, failed connections): a caller reaches it through
    CONNECT (a request, answered 503 when no instance is healthy) or through `--upstream` (a
    TCP proxy: no request at all, the connection is closed at once), so its connections are
    counted from both, and a connection failed when it found no healthy instance or could
    not connect (a refused CONNECT counts in both its 503 and its UH: the larger is taken)."""
    tcp = _is_tcp(evidence, ref)
    out = []
    for node, dst, values in evidence.edges():
        if dst != ref:
            continue
        total, failed = requests(values), values.get("rq5", 0)
        if tcp:
            failed = max(failed, values.get("no_healthy", 0) + values.get("cfail", 0)
                         + values.get("ctimeout", 0))
            total = max(total, values.get("cxt", 0) + values.get("no_healthy", 0), failed)
        if total:
            out.append((node, total, failed))
    return out


def _caller_lines(callers: list[tuple[str, int, int]], tcp: bool = False) -> list[str]:
    if tcp:
        return [f"{node} -> {{service}}: {total} connections, {failed} failed before reaching "
                "an instance (no healthy instance, or connect failure)"
                for node, total, failed in callers]
    return [f"{node} -> {{service}}: {failed} of {total} requests failed with 5xx"
            for node, total, failed in callers]


# What the mesh does to a tcp service's callers when no instance is healthy (UH).
_TCP_REFUSED = ("a CONNECT is answered 503, a connection through `tulle run --upstream` is "
                "closed at once")


def no_healthy_endpoints(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1001: callers call a service whose sidecars have no healthy endpoint for it."""
    for ref in sorted({dst for _, dst, _ in evidence.edges()}):
        callers = [c for c in _failures_by_caller(evidence, ref) if c[2]]
        if not callers:
            continue
        uh = sum(evidence.edge_counters(node, ref).get("no_healthy", 0)
                 for node, _, _ in callers)
        instances = evidence.instances_of(ref)
        ready = [w for w in instances if w.serves_traffic]
        views = {node: evidence.upstream_hosts(node, ref) for node, _, _ in callers}
        ejected_all = bool(ready) and all(
            hosts is not None and hosts and not any(h.healthy for h in hosts)
            for hosts in views.values())
        if ready and not ejected_all:
            continue  # endpoints exist: other rules explain the failures
        failed = sum(c[2] for c in callers)
        total = sum(c[1] for c in callers)
        tcp = _is_tcp(evidence, ref)
        evidence_lines = [line.format(service=ref.host) for line in _caller_lines(callers, tcp)]
        if uh:
            evidence_lines.append(f"{uh} {'connections' if tcp else 'requests'} found no "
                                  "healthy upstream (Envoy flag UH)")
        departed = evidence.departed_of(ref)
        feeds = feeding(evidence, ref)
        routed = not instances and not departed and bool(feeds)
        sources = tuple(proxy_subject(node) for node, _, _ in callers)
        related = [proxy_subject(node) for node in departed]
        severity = Severity.CRITICAL
        if ejected_all:
            cause, fix, severity = _all_ejected(evidence, ref, views, (failed, total),
                                                evidence_lines)
        elif instances:
            states = ", ".join(f"{w.name} is {w.state.value}" for w in instances)
            cause = (f"{ref.host} has no ready instance ({states}), so callers have no "
                     "healthy endpoint (UH).")
            evidence_lines.append(f"registered instances: {states}")
            related += [proxy_subject(w.node_id) for w in instances]
            fix = (f"make the instances of {ref.host} accept connections on their port "
                   "(see the instance findings)")
        elif departed:
            gone = ", ".join(departed)
            cause = (f"Every instance of {ref.host} has stopped ({gone}), but callers still "
                     "call it, and get 503 no healthy upstream (UH).")
            for node in departed:
                age = evidence.window.last_report_age.get(node)
                evidence_lines.append(
                    f"{node} served {ref.host} in the window and is no longer registered"
                    + (f" (last report {age:.0f}s ago)" if age is not None else ""))
            fix = (f"start {ref.name} again: `tulle run --service {ref.name} --namespace "
                   f"{ref.namespace} --port PORT -- COMMAND` (an instance stops when its "
                   "application exits: check why it did)")
        elif routed:
            cause = (f"No instance of {ref.host} has ever run, but a route sends callers to it, "
                     "and they get 503 no healthy upstream (UH).")
            evidence_lines += [b.describe() for b in feeds]
            related += [b.subject for b in feeds]
            fix = (f"start an instance of {ref.host}, or take it out of "
                   f"{feeds[0].subject} (see TUL1027)")
        else:
            cause = (f"No instance of {ref.host} has ever run, but callers call it and get "
                     "503 no healthy upstream (UH).")
            evidence_lines.append(f"{ref.host} has no registered instance")
            fix = (f"start one: `tulle run --service {ref.name} --namespace {ref.namespace} "
                   "--port PORT -- COMMAND`, or stop calling it")
        cause += (f" {ref.host} is a tcp service: the mesh refused these connections itself "
                  f"(UH: {_TCP_REFUSED}); the application never saw them." if tcp else
                  " The mesh answered these requests itself (503, UH); the application never "
                  "saw them.")
        yield Finding("TUL1001", severity, impact(failed, total, base=60),
                      service_subject(ref), cause, tuple(evidence_lines), fix,
                      related=tuple(sorted(set(related))), sources=sources,
                      symptom=(bool(instances) and not ejected_all) or routed)


def _all_ejected(evidence: Evidence, ref: ServiceRef,
                 views: Mapping[str, tuple[HostHealth, ...] | None], seen: tuple[int, int],
                 lines: list[str]) -> tuple[str, str, Severity]:
    """Cause, fix and severity when every instance of ``ref`` is ejected; adds to ``lines``."""
    cause = (f"Every instance of {ref.host} is ejected by outlier detection, so callers "
             "have no healthy endpoint (UH).")
    for node, hosts in views.items():
        flagged = ", ".join(f"{h.hostname or h.address} ({'/'.join(h.flags)})"
                            for h in hosts or ())
        lines.append(f"{node}'s Envoy: endpoints of {ref.host}: {flagged}")
    source = evidence.mesh.services[ref].policy.source_of("outlier_detection") \
        if ref in evidence.mesh.services else None
    fix = (f"fix the failing instances of {ref.host} (`tulle tap {ref.name} --status "
           "5xx`)" + (f"; lower spec.outlierDetection.maxEjectionPercent in {source}"
                      if source else ""))
    failed, total = seen
    share = failed / total if total else 0.0
    lines.append(f"callers saw {share:.0%} of their requests fail: with every endpoint "
                 "ejected, Envoy's panic mode still sends requests to the ejected instances")
    severity = (Severity.CRITICAL if share >= CRITICAL_SHARE else Severity.ERROR
                if share >= ERROR_SHARE else Severity.WARNING)
    return cause, fix, severity


def instance_not_ready(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1002: a registered instance whose application does not accept connections, or
    whose gRPC health check says it is not serving."""
    for node, workload in sorted(evidence.workloads.items()):
        if workload.state not in (WorkloadState.STARTING, WorkloadState.NOT_READY):
            continue
        since = evidence.now - workload.registered_at
        ref = workload.service_ref
        callers = _failures_by_caller(evidence, ref)
        failed = sum(c[2] for c in callers)
        if workload.state is WorkloadState.STARTING and since < STARTUP_GRACE_S and not failed:
            continue  # starting, and nobody fails on it yet: a phase, not a finding
        port = workload.app_port
        health = "gRPC health check" in workload.state_reason
        if health:
            # It accepts connections; its own grpc.health.v1 status says it should get none.
            cause = (f"The application of {node} accepts connections on port {port}, but "
                     f"{workload.state_reason}, so it gets no traffic.")
        elif workload.state is WorkloadState.STARTING:
            cause = (f"The application of {node} has not accepted a connection on port {port} "
                     f"in the {since:.0f}s since it registered, so it gets no traffic.")
        else:
            cause = (f"The application of {node} stopped accepting connections on port {port}, "
                     "so it gets no traffic.")
        tcp = _is_tcp(evidence, ref)
        if failed and tcp:
            cause += (f" {failed} connections of its callers to {ref.host} (a tcp service) "
                      f"found no instance to reach ({_TCP_REFUSED}); the application never "
                      "saw them.")
        elif failed:
            cause += (f" Its callers got {failed} answers 503 from the mesh (no healthy "
                      "upstream); the application never saw them.")
        lines = [f"{node}: state {workload.state.value}, application port {port} "
                 f"(tulle run --port {port}), registered {since:.0f}s ago"]
        if workload.state_reason:
            lines.append(f"{node}'s agent: {workload.state_reason}")
        lines += [line.format(service=ref.host) for line in _caller_lines(callers, tcp)]
        fix = (f"find why {workload.name}'s application reports itself not serving (it sets "
               "its own grpc.health.v1 status); meanwhile callers go to its other instances, if any"
               if health else
               f"make the application listen on {workload.address}:{port}, or run it with the "
               f"port it listens on: `tulle run --service {ref.name} --name {workload.name} "
               "--port ACTUAL_PORT -- COMMAND`")
        yield Finding(
            "TUL1002", Severity.CRITICAL if failed else Severity.ERROR,
            impact(failed, sum(c[1] for c in callers), base=55), proxy_subject(node), cause,
            tuple(lines), fix,
            related=(service_subject(ref),), sources=tuple(proxy_subject(c[0]) for c in callers))


def app_connect_failures(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1003: a sidecar cannot connect to its own application."""
    for node in sorted({node for node, _ in evidence.window.counters}):
        failures = evidence.inbound(node).get("app_cfail", 0)
        if not failures or node not in evidence.workloads:
            continue  # none, or the instance has left (TUL1001 names it if it is missed)
        ref = evidence.service_of(node)
        workload = evidence.workloads.get(node)
        port = workload.app_port if workload else None
        callers = _failures_by_caller(evidence, ref) if ref else []
        tcp = _is_tcp(evidence, ref)
        lines = [f"{node}'s sidecar failed {failures} times to connect to its application"
                 + (f" on port {port}" if port else "")]
        if ref is not None:
            lines += [line.format(service=ref.host) for line in _caller_lines(callers, tcp)]
        answer = ("its sidecar closes each connection a caller opens to it (UF; a caller "
                  "through CONNECT got 200, then the tunnel closed with no byte): the mesh "
                  "closed these connections" if tcp else
                  "its sidecar answers 503 (UF): the mesh produced these answers")
        yield Finding(
            "TUL1003", Severity.CRITICAL, impact(failures, failures, base=70),
            proxy_subject(node),
            f"The application behind {node} refuses connections"
            + (f" on port {port}" if port else "") + f", so {answer}, the application never "
            "accepted the connection.",
            tuple(lines),
            "restart the application, or run the workload with the port it listens on "
            "(`tulle run --port ACTUAL_PORT`)",
            related=(service_subject(ref),) if ref else (),
            sources=tuple(proxy_subject(c[0]) for c in callers))


def upstream_connect_failures(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1004: callers cannot connect to a service's sidecars."""
    by_service: dict[ServiceRef, list[str]] = {}
    related: dict[ServiceRef, set[str]] = {}
    totals: dict[ServiceRef, int] = {}
    for node, ref, values in evidence.edges():
        failures = values.get("cfail", 0) + values.get("ctimeout", 0)
        if not failures:
            continue
        tls = values.get("tls_err", 0) + values.get("san_fail", 0) + values.get(
            "verify_fail", 0)
        by_service.setdefault(ref, []).append(
            f"{node} -> {ref.host}: {values.get('cfail', 0)} connect failures, "
            f"{values.get('ctimeout', 0)} connect timeouts, {tls} TLS errors, "
            f"{values.get('rq5', 0)} of {requests(values)} requests 5xx")
        related.setdefault(ref, set()).add(proxy_subject(node))
        totals[ref] = totals.get(ref, 0) + failures
    for ref, lines in sorted(by_service.items()):
        instances = ", ".join(f"{w.name} ({w.state.value})" for w in evidence.instances_of(ref))
        seen = [v for _, dst, v in evidence.edges() if dst == ref]
        answered = sum(requests(v) for v in seen)
        failed = sum(v.get("rq5", 0) for v in seen)
        # A few connect failures while instances come and go (a rolling restart) that
        # callers hardly notice are a warning; failing calls make it an error.
        severe = not answered or failed / answered >= CONNECT_ERROR_SHARE
        yield Finding(
            "TUL1004", Severity.ERROR if severe else Severity.WARNING,
            min(90.0, 40.0 + totals[ref]) if severe else 30.0, service_subject(ref),
            f"Callers cannot connect to the sidecars of {ref.host} (UF): the mesh answers "
            "those requests 503 itself.",
            (*lines, f"instances: {instances or 'none'}"),
            "check the instances run (`tulle get workloads`), their certificates "
            "(`tulle certs status`) and sync (`tulle proxy-status`)",
            sources=tuple(sorted(related[ref])))


def service_left_mesh(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1001: a service with no Service resource lost its last instance, so it left the
    mesh: its callers' sidecars no longer know its name and answer 404 themselves."""
    for ref in sorted({dst for _, dst, _ in evidence.edges()}):
        departed = evidence.departed_of(ref)
        if (not departed or ref in evidence.mesh.services or evidence.instances_of(ref)
                or feeding(evidence, ref)):
            continue
        # A host no scope matches gets 502 from the caller's sidecar (REGISTRY_ONLY; Envoy
        # counts it as NR, with route misses, since outbound routes are scoped per service);
        # 400s to tcp services are direct responses.
        callers = [(node, sum(evidence.proxy_counters(node).get(k, 0)
                              for k in ("nohost", "noroute")))
                   for node in evidence.callers_of(ref)]
        callers = [(node, n) for node, n in callers if n]
        if not callers:
            continue  # nobody calls it any more: a service that was stopped on purpose
        refused = sum(n for _, n in callers)
        gone = ", ".join(departed)
        yield Finding(
            "TUL1001", Severity.CRITICAL, min(95.0, 60.0 + refused), service_subject(ref),
            f"Every instance of {ref.host} has stopped ({gone}), and no Service resource "
            f"declares it, so {ref.host} left the mesh: its callers' sidecars no longer know "
            "the name and refuse the calls themselves (502: neither a mesh service nor an "
            "ExternalService). The application never saw these requests.",
            (*(f"{node}: {n} requests answered by its own sidecar (502 unknown host) in the "
               "window" for node, n in callers),
             *(f"{node} served {ref.host} in the window and is no longer registered"
               for node in departed)),
            f"start {ref.name} again: `tulle run --service {ref.name} --namespace "
            f"{ref.namespace} --port PORT -- COMMAND`; declare it (`kind: Service`, name "
            f"{ref.name}) so that callers get 503 no healthy upstream, not 502, while it is "
            "down",
            related=tuple(proxy_subject(node) for node in departed),
            sources=tuple(proxy_subject(node) for node, _ in callers))


RULES = (no_healthy_endpoints, service_left_mesh, instance_not_ready, app_connect_failures,
         upstream_connect_failures)
