"""Diagnosis rules: the sidecar itself stopped serving, or keeps restarting.

The control plane intends every registered workload's Envoy to be LIVE with all its listeners
accepting. Two things break that without any config change, and without the workload leaving
the endpoints: a listener stopped through Envoy's admin (``/drain_listeners``, which tulle
never calls: the listener refuses connections until Envoy restarts, while ``/listeners``
still lists it) or a server that left LIVE (``/healthcheck/fail``, a shutdown); and an Envoy
that exits again and again (a crash, ``/quitquitquit``, the OOM killer), which the agent
restarts. Both come from the sidecar's own telemetry: Envoy's ``server.state`` and
``listener_manager.listener_stopped``, and the agent's count of restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding, Scope, Severity, proxy_subject, service_subject
from tulle.telemetry.schema import (
    LISTENERS_STOPPED,
    PROXY,
    RESTARTS,
    SERVER_LIVE,
    SERVER_STATE,
    SeriesKey,
)

_STATES = {0: "LIVE", 1: "DRAINING", 2: "PRE_INITIALIZING", 3: "INITIALIZING"}
ADMIN_HINT = ("only a process with access to its admin socket can do that: the workload's "
              "user or root")


def sidecar_not_serving(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1017: a registered workload's Envoy stopped listeners or is not LIVE."""
    for node, workload in sorted(evidence.workloads.items()):
        gauges = evidence.gauges(node, SeriesKey(PROXY))
        stopped = int(gauges.get(LISTENERS_STOPPED, 0))
        state = gauges.get(SERVER_STATE, SERVER_LIVE)
        if not stopped and state == SERVER_LIVE:
            continue
        lines = [f"{node} is registered {workload.state.value}"]
        if stopped:
            lines.append(f"its Envoy stopped {stopped} listener(s) since it started "
                         "(listener_manager.listener_stopped); a stopped listener refuses "
                         "connections until Envoy restarts")
        if state != SERVER_LIVE:
            lines.append(f"its Envoy reports server state {_STATES.get(state, state)}, "
                         "not LIVE")
        if workload.inbound_port is not None:
            lines.append(f"its inbound listener is {workload.address}:{workload.inbound_port}")
        ref = evidence.service_of(node)
        callers = evidence.callers_of(ref) if ref is not None else []
        if callers:
            lines.append(f"callers of {ref}: {', '.join(callers)}")
        serving = workload.serves_traffic and workload.inbound_port is not None
        yield Finding(
            "TUL1017", Severity.CRITICAL if serving else Severity.ERROR,
            90.0 if serving else 60.0, proxy_subject(node),
            f"The sidecar {node} stopped serving: its Envoy was told to drain or fail through "
            f"its admin interface ({ADMIN_HINT}), while the workload still counts as "
            f"{workload.state.value} and stays in its service's endpoints.",
            tuple(lines),
            f"restart its Envoy (the agent starts a new one: `kill` the Envoy process of "
            f"{node}), or restart the workload; then find who reached its admin socket",
            related=(service_subject(ref),) if ref is not None else (),
            sources=tuple(proxy_subject(c) for c in callers))


def sidecar_restarting(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1018: the agent had to restart a sidecar's Envoy within the window."""
    for node in sorted(evidence.nodes.keys() | evidence.workloads.keys()):
        restarts = int(evidence.proxy_counters(node).get(RESTARTS, 0))
        if not restarts:
            continue
        uptime = evidence.gauges(node, SeriesKey(PROXY)).get("uptime")
        lines = [f"the agent of {node} restarted its Envoy {restarts} time(s) in the last "
                 f"{evidence.window.seconds:g}s"]
        if uptime is not None:
            lines.append(f"the current Envoy has run {uptime}s")
        ref = evidence.service_of(node)
        yield Finding(
            "TUL1018", Severity.ERROR, 55.0 + min(restarts, 10) * 3.0, proxy_subject(node),
            f"The sidecar {node} keeps exiting and the agent restarts it: a crash, the OOM "
            f"killer, or `/quitquitquit` through its admin interface ({ADMIN_HINT}). Each "
            "restart drops its connections and its config until it reconnects.",
            tuple(lines),
            f"read why it exited: `tulle proxy logs {node}` and the agent's log in the "
            "workload directory; check the host's memory (`dmesg` for the OOM killer)",
            related=(service_subject(ref),) if ref is not None else ())


RULES = (sidecar_not_serving, sidecar_restarting)
