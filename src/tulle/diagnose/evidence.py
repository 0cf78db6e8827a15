"""The evidence a diagnosis reads: one immutable snapshot, gathered once per run.

Gathering (in the control plane, ``tulle.controlplane.services.diagnosis``) is the only I/O;
rules are pure functions of this value, so unit tests build one by hand. It holds the mesh snapshot
(services, endpoints, routes, resolved policies, registered workloads), the telemetry window
(every sidecar's counters over ``--window``), each sidecar's view of its upstream endpoints
(Envoy ``/clusters``), xDS sync states and NACKs, the ADS streams the control plane refused,
the identity status, and recent changes. Before reading the window, the control plane asks
every agent for a report now (``reports``): which evidence is fresh, which is missing and how
old, and the state of each workload's processes (a frozen application, Envoy or agent).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tulle.identity.status import IdentityStatus
from tulle.model.mesh import EMPTY_MESH, MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.model.workload import Workload
from tulle.store.base import Change
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import INBOUND, INBOUND_PLAINTEXT, OUTBOUND, PROXY, ROUTE, SeriesKey
from tulle.telemetry.windows import Window, add_into
from tulle.xds.admission import StreamEvent
from tulle.xds.sync import Nack, ProxySync

Values = Mapping[str, int]
_EMPTY: Values = MappingProxyType({})


@dataclass(frozen=True)
class HostHealth:
    """One endpoint of one cluster, as a sidecar's Envoy sees it."""

    address: str  # "127.0.0.1:15006"
    hostname: str  # the workload's name
    healthy: bool
    flags: tuple[str, ...] = ()  # Envoy's failure flags: "failed_outlier_check", ...


@dataclass(frozen=True)
class ProxyEvidence:
    """What one sidecar's admin interface told us. ``error`` when its agent did not answer."""

    node: str
    clusters: Mapping[str, tuple[HostHealth, ...]] = field(
        default_factory=lambda: MappingProxyType({}))  # outbound, by service host
    error: str | None = None


def parse_clusters(document: Mapping[str, Any]) -> dict[str, tuple[HostHealth, ...]]:
    """Outbound clusters' endpoints from Envoy's ``/clusters?format=json``, by service host."""
    out: dict[str, tuple[HostHealth, ...]] = {}
    for cluster in document.get("cluster_statuses", ()):
        name = str(cluster.get("name", ""))
        if not name.startswith("outbound|"):
            continue
        hosts = []
        for host in cluster.get("host_statuses", ()):
            socket = host.get("address", {}).get("socket_address", {})
            status = host.get("health_status", {})
            flags = tuple(sorted(k for k, v in status.items() if v is True))
            eds = status.get("eds_health_status", "HEALTHY")
            hosts.append(HostHealth(f"{socket.get('address', '')}:{socket.get('port_value', '')}",
                                    str(host.get("hostname", "")),
                                    not flags and eds in ("HEALTHY", "UNKNOWN"), flags))
        out[name.removeprefix("outbound|")] = tuple(hosts)
    return out


STOPPED_STATES = frozenset({"T", "t"})  # /proc/PID/stat: stopped by a signal or a tracer
_STATE_NAMES = {"R": "running", "S": "sleeping", "D": "in uninterruptible I/O",
                "T": "stopped", "t": "stopped by a tracer", "Z": "a zombie", "X": "dead",
                "I": "idle", "": "gone"}


@dataclass(frozen=True)
class ProcessInfo:
    """One process of a workload (its agent, Envoy or application), as /proc showed it."""

    pid: int
    state: str  # the state letter of /proc/PID/stat; "" when there is no such process
    command: str = ""

    @property
    def alive(self) -> bool:
        return self.state not in ("", "Z", "X")

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED_STATES

    def describe(self) -> str:
        """"pid 4242 (python3 app.py), state T (stopped)"."""
        command = f" ({self.command[:80]})" if self.command else ""
        return f"pid {self.pid}{command}, state {self.state or '-'} " \
               f"({_STATE_NAMES.get(self.state, 'unknown')})"

    @classmethod
    def from_dict(cls, data: Any) -> ProcessInfo | None:
        if not isinstance(data, Mapping) or not data.get("pid"):
            return None
        return cls(int(data["pid"]), str(data.get("state") or ""),
                   str(data.get("command") or ""))


@dataclass(frozen=True)
class AgentReport:
    """What one registered sidecar's agent said when diagnose asked it to report now.

    ``fresh``: its telemetry up to now reached the control plane. ``answered``: the agent
    answered at all (``error`` says why not, or why the report is not fresh). When it did not,
    ``agent`` is its process as the control plane sees it on this host (alive, stopped, gone).
    """

    node: str
    answered: bool
    fresh: bool
    error: str | None = None
    agent: ProcessInfo | None = None
    envoy: ProcessInfo | None = None
    envoy_answers: bool | None = None  # its Envoy's admin interface answered the agent
    app: ProcessInfo | None = None
    last_report_age: float | None = None  # seconds since its last report reached us
    telemetry_off: bool = False  # TULLE_TELEMETRY_INTERVAL=off: it never reports
    # Its host's clock minus the control plane's, give or take half the request's round trip
    # (None: not told).
    clock_offset_s: float | None = None
    clock_uncertainty_s: float = 0.0


@dataclass(frozen=True)
class TimeSlot:
    """One telemetry slot: the counters every sidecar reported during [start, start+seconds).
    ``start`` is wall-clock time, comparable with the history's change times."""

    start: float
    seconds: float
    counters: Mapping[tuple[str, SeriesKey], Values]


@dataclass(frozen=True)
class Evidence:
    mesh: MeshSnapshot = EMPTY_MESH
    window: Window = field(default_factory=lambda: Window(
        60.0, 60.0, MappingProxyType({}), MappingProxyType({}), MappingProxyType({})))
    # Every sidecar that reported in the window, also ones that left since.
    nodes: Mapping[str, NodeInfo] = field(default_factory=lambda: MappingProxyType({}))
    proxies: Mapping[str, ProxyEvidence] = field(default_factory=lambda: MappingProxyType({}))
    # The sync state of every connected proxy and of every registered workload (DISCONNECTED
    # when its proxy has no stream), by node, classified by the control plane.
    xds: Mapping[str, ProxySync] = field(default_factory=lambda: MappingProxyType({}))
    nacks: tuple[Nack, ...] = ()  # oldest first
    stream_events: tuple[StreamEvent, ...] = ()  # ADS streams refused or closed, oldest first
    identity: IdentityStatus = field(default_factory=IdentityStatus)
    history: tuple[Change, ...] = ()  # newest first
    history_error: str = ""  # why the history could not be read (findings on changes lost)
    now: float = 0.0  # wall clock (time.time()) when gathered
    # The telemetry slots of the last minutes, oldest first: when errors started.
    timeline: tuple[TimeSlot, ...] = ()
    # Every registered sidecar asked to report now, by node: fresh, missing, frozen.
    reports: Mapping[str, AgentReport] = field(default_factory=lambda: MappingProxyType({}))
    # Replicas of a shared store that did not answer (id -> where, and why): the telemetry
    # of their agents is missing.
    replicas_missing: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    # -- workloads and services ------------------------------------------------------------

    @property
    def workloads(self) -> Mapping[str, Workload]:
        """Registered workloads by node id."""
        return self.mesh.workloads

    def service_of(self, node: str) -> ServiceRef | None:
        workload = self.mesh.workloads.get(node)
        if workload is not None:
            return workload.service_ref
        info = self.nodes.get(node)
        return ServiceRef(info.namespace, info.service) if info else None

    def instances_of(self, ref: ServiceRef) -> list[Workload]:
        """Registered workloads of ``ref`` (ready or not)."""
        selector = self.mesh.services[ref].selector if ref in self.mesh.services else ()
        return sorted((w for w in self.mesh.workloads.values()
                       if w.service_ref == ref or (selector and w.namespace == ref.namespace
                                                   and w.matches(selector))),
                      key=lambda w: w.name)

    def departed_of(self, ref: ServiceRef) -> list[str]:
        """Nodes of ``ref`` that reported telemetry in the window but are registered no more."""
        return sorted(n for n, info in self.nodes.items()
                      if (info.namespace, info.service) == (ref.namespace, ref.name)
                      and n not in self.mesh.workloads)

    # -- telemetry -------------------------------------------------------------------------

    def counters(self, node: str, key: SeriesKey) -> Values:
        return self.window.counters.get((node, key), _EMPTY)

    def gauges(self, node: str, key: SeriesKey) -> Values:
        return self.window.gauges.get((node, key), _EMPTY)

    def inbound(self, node: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for kind in (INBOUND, INBOUND_PLAINTEXT):
            add_into(total, self.counters(node, SeriesKey(kind)))
        return total

    def proxy_counters(self, node: str) -> Values:
        return self.counters(node, SeriesKey(PROXY))

    def edges(self) -> Iterator[tuple[str, ServiceRef, Values]]:
        """(caller node, called service, counters) for every caller-to-service edge that
        carried traffic in the window, in a stable order."""
        for (node, key), values in sorted(self.window.counters.items()):
            if key.kind == OUTBOUND and key.destination:
                name, _, namespace = key.destination.partition(".")
                yield node, ServiceRef(namespace, name), values

    def called_by(self, node: str) -> set[ServiceRef]:
        """The services ``node`` called in the window, and those its workload binds locally
        (``--upstream``), which it may call at any time."""
        called = {ref for caller, ref, _ in self.edges() if caller == node}
        workload = self.workloads.get(node)
        if workload is not None:
            called |= {bind.service for bind in workload.upstreams}
        return called

    def edge_counters(self, node: str, ref: ServiceRef) -> Values:
        return self.counters(node, SeriesKey(OUTBOUND, ref.host))

    def edge_gauges(self, node: str, ref: ServiceRef) -> Values:
        return self.gauges(node, SeriesKey(OUTBOUND, ref.host))

    def callers_of(self, ref: ServiceRef) -> list[str]:
        """Nodes that sent requests to ``ref`` in the window."""
        return sorted({node for node, dst, values in self.edges()
                       if dst == ref and requests(values)})

    def route_counters(self, ref: ServiceRef) -> Iterator[tuple[str, SeriesKey, Values]]:
        for (node, key), values in sorted(self.window.counters.items()):
            if key.kind == ROUTE and key.destination == ref.host:
                yield node, key, values

    def upstream_hosts(self, node: str, ref: ServiceRef) -> tuple[HostHealth, ...] | None:
        """``node``'s Envoy's endpoints for ``ref``; None when not read."""
        proxy = self.proxies.get(node)
        if proxy is None or proxy.error is not None:
            return None
        return proxy.clusters.get(ref.host, ())

    def around(self, at: float) -> tuple[list[TimeSlot], list[TimeSlot]]:
        """The telemetry slots wholly before ``at`` and those from it on; the slot ``at``
        falls in is in neither (it holds traffic from both sides)."""
        return ([s for s in self.timeline if s.start + s.seconds <= at],
                [s for s in self.timeline if s.start >= at])

    # -- history ---------------------------------------------------------------------------

    def last_change(self, kind: str, namespace: str, name: str) -> Change | None:
        for change in self.history:
            if (change.key.kind, change.key.namespace, change.key.name) == (kind, namespace,
                                                                            name):
                return change
        return None


def requests(values: Values) -> int:
    """Requests answered (any status) in a series."""
    return sum(values.get(f"rq{i}", 0) for i in range(1, 6))


def code_count(values: Values, code: int) -> int:
    return values.get(f"c{code}", 0)
