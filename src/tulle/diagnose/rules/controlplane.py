"""Diagnosis rules: the control plane and the config path (TUL1060-TUL1066).

xDS sync states come classified by the control plane (``tulle.xds.sync``: what `tulle
proxy-status` shows), the ADS streams it refused from its record (``tulle.xds.admission``),
changes from the store history, per-sidecar memory and stats counts from
the PROXY telemetry series, and the timing of errors from the telemetry slots. (An unreachable
control plane is TUL1016, found by the CLI.)
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterator, Mapping
from typing import Any

from tulle.diagnose.evidence import AgentReport, Evidence, TimeSlot, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    service_subject,
)
from tulle.diagnose.rules import Rule
from tulle.humanize import format_duration
from tulle.model.meta import ServiceRef
from tulle.model.workload import THIS_HOST
from tulle.store.base import Change
from tulle.telemetry import outliers
from tulle.telemetry.schema import OUTBOUND, PROXY, SeriesKey
from tulle.xds.admission import exposed_credentials
from tulle.xds.sync import SyncState

NACK_CHANGE_SLACK_S = 2.0  # a NACK comes within moments of the change that caused it
ERRORS_MIN_REQUESTS = 10  # after a change, at least this many requests to judge a rate
ERRORS_MIN_RATE, ERRORS_MIN_RISE = 0.10, 0.10  # >= 10 % errors, 10 points above before
# A change is blamed only for traffic it touched that was healthy before it: at least this
# many requests before the change, failing less than this share.
HEALTHY_MIN_REQUESTS, HEALTHY_MAX_RATE = 5, 0.05


def when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%SZ")



def change_name(change: Change) -> str:
    key = change.key
    return f"{key.kind} {key.namespace}/{key.name}" if key.namespace else f"{key.kind} {key.name}"


def rollback_command(change: Change) -> str:
    """The command that undoes exactly ``change`` (its inverse), shown as its dry run."""
    return f"tulle rollback --revert {change.revision} --dry-run"


def rollback_fix(change: Change) -> str:
    return (f"`{rollback_command(change)}` shows how to undo revision {change.revision} alone "
            "(then run it without --dry-run); `tulle history` shows it in full")


def diff_summary(change: Change) -> str:
    """"created", "deleted", or the changed field paths of a revision, briefly."""
    if change.before is None:
        return "created"
    if change.after is None:
        return "deleted"
    paths = sorted(changed_paths(change.before.get("spec"), change.after.get("spec"), "spec"))
    if not paths:
        return "metadata only"
    shown = ", ".join(paths[:5])
    return f"changed {shown}" + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def changed_paths(before: Any, after: Any, path: str) -> set[str]:
    if before == after:
        return set()
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: set[str] = set()
        for key in before.keys() | after.keys():
            out |= changed_paths(before.get(key), after.get(key), f"{path}.{key}")
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = set()
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            out |= changed_paths(a, b, f"{path}[{index}]")
        return out
    return {path}


# -- xDS -----------------------------------------------------------------------------------

def _cause_of(evidence: Evidence, at: float) -> Change | None:
    """The newest change stored before ``at`` (history is newest first)."""
    return next((c for c in evidence.history if c.at <= at + NACK_CHANGE_SLACK_S), None)


def config_rejected(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for node, sync in sorted(evidence.xds.items()):
        for kind in sync.types:
            nack = kind.nack
            if kind.state is not SyncState.NACKED or nack is None:
                continue
            change = _cause_of(evidence, nack.at)
            lines = [f"{node} rejected {kind.type} version {nack.rejected_version or '?'} at "
                     f"{when(nack.at)} and keeps running version {nack.kept_version or '-'}",
                     f"Envoy: {nack.message.strip()}"]
            related: tuple[str, ...] = ()
            fix = (f"correct the resource Envoy names above and apply it again; "
                   f"`tulle proxy-status {node}` shows the state")
            if change is not None:
                lines.append(f"the change just before: revision {change.revision} at "
                             f"{when(change.at)}, {change.action} {change_name(change)} "
                             f"({diff_summary(change)})")
                related = (resource_subject(change.key),)
                fix = (f"{rollback_fix(change)}; or correct {change_name(change)} and apply it "
                       "again. Please report it too (`tulle bug-report`): tulle validated a "
                       "config Envoy refused")
            ref = evidence.service_of(node)
            yield Finding(
                "TUL1060", Severity.CRITICAL, 90.0, proxy_subject(node),
                f"The sidecar {node} rejected its {kind.type} configuration: it keeps its last "
                "accepted config and gets no further changes of that type until this is fixed.",
                tuple(lines), fix,
                related=(*related, *((service_subject(ref),) if ref else ())))


def config_stale(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for node, sync in sorted(evidence.xds.items()):
        stale = [t for t in sync.types if t.state is SyncState.STALE]
        if not stale:
            continue
        oldest = min(t.sent_at or evidence.now for t in stale)
        acked = [t.acked_at for t in sync.types if t.acked_at]
        last_ack = max(acked) if acked else None
        missed = [c for c in evidence.history if last_ack is None or c.at > last_ack]
        lines = [f"{', '.join(t.type for t in stale)} {SyncState.STALE.label}: sent "
                 f"{format_duration(evidence.now - oldest)} ago (at {when(oldest)}) and not "
                 f"acknowledged (the threshold is {sync.stale_after_s:g}s)",
                 "last acknowledgement: " + (f"{format_duration(evidence.now - last_ack)} ago"
                                             if last_ack else "never")]
        lines.append(f"it runs mesh version {min(t.acked_mesh_version for t in stale)}; the "
                     f"control plane sent {max(t.sent_mesh_version for t in stale)}")
        synced = sorted(n for n, s in evidence.xds.items()
                        if n != node and s.state is SyncState.SYNCED)
        if synced:
            lines.append(f"{len(synced)} other sidecar(s) are {SyncState.SYNCED.label}: "
                         + ", ".join(synced[:5]))
        if missed:
            lines.append("it misses: " + "; ".join(
                f"revision {c.revision} {c.action} {change_name(c)}" for c in missed[:5]))
        yield Finding(
            "TUL1061", Severity.ERROR, 80.0, proxy_subject(node),
            f"The sidecar {node} has stopped acknowledging configuration for "
            f"{format_duration(evidence.now - oldest)}: it still runs an older config while "
            "the rest of the mesh moved on.",
            tuple(lines),
            f"see whether its Envoy is alive and responsive (workloads/{node}/envoy.log in "
            "the state directory, `tulle proxy-status " + node + "`); restarting the "
            "workload makes it fetch the current config",
            related=tuple(resource_subject(c.key) for c in missed[:5]))


def proxy_disconnected(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for node, sync in sorted(evidence.xds.items()):
        workload = evidence.workloads.get(node)
        if sync.state is not SyncState.DISCONNECTED or workload is None \
                or not workload.serves_traffic:
            continue
        age = evidence.window.last_report_age.get(node)
        lines = [f"{node} is registered and ready but has no xDS stream to the control plane",
                 f"the control plane is at mesh version {evidence.mesh.version}"]
        if age is not None:
            lines.append(f"its agent last reported telemetry {format_duration(age)} ago")
        yield Finding(
            "TUL1062", Severity.ERROR, 75.0, proxy_subject(node),
            f"The sidecar {node} is not connected to the control plane: it serves its last "
            "config and misses every change since.",
            tuple(lines),
            f"check its Envoy (workloads/{node}/envoy.log) and the control plane's xDS port; "
            "restart the workload if it does not reconnect",
            related=(service_subject(workload.service_ref),))


def xds_credential_presented_twice(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    registered_at = {n: w.registered_at for n, w in evidence.workloads.items()}
    for node, refused in exposed_credentials(evidence.stream_events, registered_at).items():
        lines = [f"{len(refused)} second ADS stream(s) for {node} refused while its stream "
                 "was live; Envoy keeps only one"]
        for event in refused[-5:]:
            since = f" since {when(event.holder_since)}" if event.holder_since else ""
            lines.append(f"at {when(event.at)}: a stream from {event.peer} presented "
                         f"{node}'s credential; the live stream is from "
                         f"{event.holder_peer or '?'}{since}")
        ref = evidence.service_of(node)
        yield Finding(
            "TUL1066", Severity.CRITICAL, 95.0, proxy_subject(node),
            f"Another client presented the xDS credential of the sidecar {node}: its "
            "bootstrap has been copied. The control plane refused the second stream, but "
            "whoever holds the credential can ask for this sidecar's configuration and "
            "certificate whenever its own stream is down.",
            tuple(lines),
            f"find the process behind each peer address above (`ss -tnp` shows who owns "
            f"the port) and how it read workloads/{node}/bootstrap.json in the state "
            "directory; then restart the workload: its new registration gets a new "
            "credential, the copied one stops working and this finding clears",
            related=(service_subject(ref),) if ref else ())


# -- resources -------------------------------------------------------------------------------

def _proxy_gauge(evidence: Evidence, field: str) -> dict[str, int]:
    out = {}
    for node in evidence.nodes.keys() | evidence.workloads.keys():
        value = evidence.gauges(node, SeriesKey(PROXY)).get(field)
        if value:
            out[node] = int(value)
    return out


def _outliers(values: dict[str, int], rule: outliers.OutlierRule
              ) -> Iterator[tuple[str, int, float, int]]:
    for o in outliers.far_above_peers(values, rule):
        yield o.node, o.value, o.median, o.peers


def proxy_memory_outlier(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    stats = _proxy_gauge(evidence, "stats")
    for node, value, median, peers in _outliers(_proxy_gauge(evidence, "mem"),
                                                outliers.MEMORY):
        lines = [f"{node}: {value / 2**20:.0f} MiB allocated; the median of its {peers} "
                 f"peers: {median / 2**20:.0f} MiB"]
        if node in stats:
            lines.append(f"it has {stats[node]} stats")
        yield Finding(
            "TUL1063", Severity.WARNING, 50.0, proxy_subject(node),
            f"The sidecar {node} uses {value / max(median, 1):.1f}x the memory of its peers: "
            "a config much larger than theirs (many upstreams, listeners or clusters) or a "
            "leak.", tuple(lines),
            f"compare its config with a peer's (`tulle proxy-config all {node}`); keep the "
            "services it binds (--upstream) to what it calls. Envoy does not give memory back "
            "after config shrinks: restart the workload once it is smaller")


def stats_explosion(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    for node, value, median, peers in _outliers(_proxy_gauge(evidence, "stats"),
                                                outliers.STATS):
        yield Finding(
            "TUL1064", Severity.WARNING, 45.0, proxy_subject(node),
            f"The sidecar {node} carries {value} stats, {value / max(median, 1):.1f}x the "
            "median of its peers: every listener, route and called cluster adds stats, and "
            "each costs memory and collection time.",
            (f"{node}: {value} stats; the median of its {peers} peers: {median:.0f}",),
            f"see what it has that its peers do not (`tulle proxy-config all {node}`): "
            "typically many --upstream binds or calls to many services")


# -- changes and errors ------------------------------------------------------------------------

def affected_services(change: Change) -> set[ServiceRef] | None:
    """Services a change can affect; None when it can affect any (the Mesh)."""
    namespace = change.key.namespace or "default"
    kind = change.key.kind
    if kind == "Service":
        return {ServiceRef(namespace, change.key.name)}
    refs: set[ServiceRef] = set()
    for manifest in (change.before, change.after):
        spec = (manifest or {}).get("spec") or {}
        # A route moves traffic from its parent to its backends: errors may show on either.
        backends = [b for rule in spec.get("rules", ()) if isinstance(rule, Mapping)
                    for b in rule.get("backendRefs", ())]
        for ref in (*spec.get("parentRefs", ()), *spec.get("targetRefs", ()), *backends):
            if isinstance(ref, Mapping) and ref.get("kind", "Service") == "Service":
                refs.add(ServiceRef(ref.get("namespace") or namespace, str(ref.get("name"))))
    return refs if kind in ("HTTPRoute", "TrafficPolicy") else None


def _rates(slots: list[TimeSlot], services: set[ServiceRef] | None,
           callers: set[str] | None = None) -> dict[ServiceRef, tuple[int, int]]:
    """(requests, 5xx) per called service, from the callers' side (``callers`` only, when
    given), over ``slots``."""
    out: dict[ServiceRef, tuple[int, int]] = {}
    for slot in slots:
        for (node, key), values in slot.counters.items():
            if key.kind != OUTBOUND or not key.destination:
                continue
            if callers is not None and node not in callers:
                continue
            name, _, namespace = key.destination.partition(".")
            ref = ServiceRef(namespace, name)
            if services is not None and ref not in services:
                continue
            sent, errors = out.get(ref, (0, 0))
            out[ref] = (sent + requests(values), errors + values.get("rq5", 0))
    return out


def _rate(pair: tuple[int, int]) -> float:
    return pair[1] / pair[0] if pair[0] else 0.0


def change_preceded_errors(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    if not evidence.timeline:
        return
    reported: set[ServiceRef] = set()
    for change in evidence.history:  # newest first: the latest change before the errors wins
        if change.at < evidence.timeline[0].start:
            break
        before, after = evidence.around(change.at)
        services = affected_services(change)
        rates_before, rates_after = _rates(before, services), _rates(after, services)
        had_traffic = {ref for ref, (sent, _) in rates_before.items() if sent}
        # The slot the change fell in holds traffic from both sides of it: the healthy calls
        # (the old backend's, typically) of callers that ran before the change count as
        # before; a caller that started after it had no traffic before it.
        older = {node for node, w in evidence.workloads.items() if w.registered_at < change.at}
        for ref, pair in _rates([s for s in evidence.timeline
                                 if s.start < change.at < s.start + s.seconds],
                                services, older).items():
            if _rate(pair) < HEALTHY_MAX_RATE:
                known = rates_before.get(ref, (0, 0))
                rates_before[ref] = (known[0] + pair[0], known[1] + pair[1])
        # The traffic the change touched: a route's or policy's services together (a route
        # moves calls from one backend to another), any other change's one service at a time.
        touched = (sum(n for n, _ in rates_before.values()),
                   sum(e for _, e in rates_before.values()))
        for ref, now in sorted(rates_after.items()):
            then = touched if services is not None else rates_before.get(ref, (0, 0))
            if ref in reported or now[0] < ERRORS_MIN_REQUESTS:
                continue
            if then[0] < HEALTHY_MIN_REQUESTS or _rate(then) >= HEALTHY_MAX_RATE:
                continue  # no healthy traffic before it (or none at all): not its doing
            if _rate(now) < ERRORS_MIN_RATE or _rate(now) - _rate(then) < ERRORS_MIN_RISE:
                continue
            reported.add(ref)
            # A backend the change began to send traffic to fails while the change's other
            # backends answer well: the new backend (a version) is the culprit, the change
            # is how its failures reached callers (TUL1020 and the instance findings lead).
            healthy = sorted(r.host for r, p in rates_after.items() if r != ref
                             and p[0] >= ERRORS_MIN_REQUESTS and _rate(p) < HEALTHY_MAX_RATE)
            # Had none before: in the slots wholly before the change. A backend's first calls
            # in the slot the change fell in are the change's doing, however well they went.
            new_backend = services is not None and ref not in had_traffic and bool(healthy)
            yield Finding(
                "TUL1065", Severity.ERROR, 85.0, resource_subject(change.key),
                f"Calls to {ref.host} started failing right after revision {change.revision} "
                f"({change.action} {change_name(change)})."
                + (f" The change began sending traffic to {ref.host}, which had none before, "
                   f"and that backend fails while {', '.join(healthy)} answers well."
                   if new_backend else ""),
                (f"revision {change.revision} at {when(change.at)}: {change.action} "
                 f"{change_name(change)}, {diff_summary(change)}",
                 f"5xx on the traffic it touched before it: {_rate(then):.0%} of {then[0]} "
                 f"requests; to {ref.host} since: {_rate(now):.0%} of {now[0]} requests"),
                f"{rollback_fix(change)}; or fix {change_name(change)} and apply it again",
                related=(service_subject(ref),), symptom=new_backend)


def replica_not_answering(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1091: another replica did not say what its agents reported."""
    for replica, why in sorted(evidence.replicas_missing.items()):
        yield Finding(
            "TUL1091", Severity.WARNING, 45.0, f"mesh/replica/{replica}",
            f"Replica {replica} of the shared store did not answer: the telemetry its agents "
            "reported is missing from this run, so findings about them may be missing too.",
            (f"replica {replica}: {why}",),
            "`tulle check` (replicas-answering) names the replicas that do not answer; start "
            "or restart it on its host")


CLOCK_WARN_S = 1.0
CLOCK_ERROR_S = 30.0  # certificates are backdated 30 s: past this, not yet valid there


def host_clock_off(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1092: a host whose agents' clocks are off from the control plane's."""
    by_host: dict[str, list[tuple[str, float, float]]] = {}
    for node, report in evidence.reports.items():
        workload = evidence.mesh.workloads.get(node)
        if workload is None or report.clock_offset_s is None:
            continue
        by_host.setdefault(workload.host, []).append((node, report.clock_offset_s,
                                             report.clock_uncertainty_s))
    for host, agents in sorted(by_host.items()):
        offset = statistics.median(o for _, o, _ in agents)
        beyond = abs(offset) - max(u for _, _, u in agents)
        if beyond <= CLOCK_WARN_S:
            continue
        severe = beyond > CLOCK_ERROR_S
        where = "this host (the control plane's)" if host == THIS_HOST else f"host {host}"
        yield Finding(
            "TUL1092", Severity.ERROR if severe else Severity.WARNING, 60.0 if severe else 30.0,
            f"host/{host}",
            f"The clock of {where} is {offset:+.1f}s from the control plane's. Certificates "
            "are issued on the control plane's clock and backdated 30 s"
            + (": on that host they can be refused as not yet valid, or expired, so calls "
               "from and to its workloads may fail their TLS handshakes."
               if severe else ", so this is within their margin; telemetry from that host "
               "lands in the wrong time windows."),
            tuple(f"{node} on {host}: its agent's clock is {o:+.3f}s from the control "
                  f"plane's (give or take {u:.3f}s)" for node, o, u in sorted(agents)),
            "run NTP on every host (chrony or systemd-timesyncd) and check it is synchronised "
            "(`chronyc tracking`, `timedatectl`); `tulle check` (hosts-clock) re-measures",
            related=tuple(proxy_subject(node) for node, _, _ in sorted(agents)))


def host_cut_off(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1093: no agent of another host answers the control plane (its link is down, the
    host is down, or a firewall drops the agents' port)."""
    by_host: dict[str, list[tuple[str, AgentReport]]] = {}
    for node, report in evidence.reports.items():
        workload = evidence.mesh.workloads.get(node)
        if workload is None or not workload.remote:
            continue
        by_host.setdefault(workload.host, []).append((node, report))
    for host, members in sorted(by_host.items()):
        if any(report.answered for _, report in members):
            continue  # one agent answers: the host is reachable (TUL1038/TUL1039 for others)
        ages = [r.last_report_age for _, r in members if r.last_report_age is not None]
        quiet = min(ages) if ages else None
        since = (f"nothing heard from any of them for {format_duration(quiet)} (since "
                 f"{when(evidence.now - quiet)})" if quiet is not None
                 else "none of them ever reported")
        yield Finding(
            "TUL1093", Severity.ERROR, 70.0, f"host/{host}",
            f"Host {host} is cut off from the control plane: none of its {len(members)} "
            f"workloads' agents answers, and {since}. Its sidecars keep serving their last "
            "config, but changes, certificates and endpoint updates do not reach them, and "
            "calls across the cut fail.",
            (*(f"the agent of {node} did not answer: {report.error or 'no answer'}"
               for node, report in sorted(members, key=lambda m: m[0])), since),
            "check the host and the network between it and the control plane (the agents' "
            "ports, from the control plane's address); when the link is back its agents "
            "register again by themselves. `tulle check` (hosts-reachable) re-asks",
            related=tuple(sorted(proxy_subject(node) for node, _ in members)))


RULES: tuple[Rule, ...] = (replica_not_answering, host_clock_off, host_cut_off,
                           config_rejected, config_stale,
                           proxy_disconnected,
                           xds_credential_presented_twice, proxy_memory_outlier,
                           stats_explosion, change_preceded_errors)
