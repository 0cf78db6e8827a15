"""The control plane's side of telemetry: agents' reports in, golden metrics out.

Agents post per-interval deltas; `tulle stat`, `routes` and `edges` read windows of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tulle.controlplane.peers import PeerAnswers, encode, merge, merge_slots
from tulle.controlplane.services.slos import RECENT_S, slo_rows
from tulle.errors import NotFoundError, UsageError
from tulle.identity.spiffe import spiffe_id
from tulle.model.egress_authz import policy_hosts
from tulle.model.mesh import MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.model.paths import match_precedence
from tulle.model.slo import mesh_slos
from tulle.model.workload import Workload
from tulle.telemetry.query import (
    NodeInfo,
    edge_rows,
    egress_authorization,
    route_rows,
    service_rows,
    workload_rows,
)
from tulle.telemetry.schema import REFUSED, SeriesKey, rule_key
from tulle.telemetry.sparklines import sparklines
from tulle.telemetry.windows import Sample, TelemetryWindows, Window

DEFAULT_WINDOW_S = 60.0
MAX_SERIES_PER_REPORT = 10_000
# Hosts refused to one caller, per access-log batch: the hosts an application names are not
# bounded, the series kept are.
MAX_REFUSED_HOSTS = 32
OTHER_HOSTS = "(other hosts)"

Series = list[tuple[SeriesKey, dict[str, int]]]


@dataclass(frozen=True)
class TelemetryQuery:
    window_s: float = DEFAULT_WINDOW_S
    namespace: str | None = None
    name: str | None = None


class TelemetryService:
    """``workload``: a registered workload by node id; ``workloads``: all of them."""

    def __init__(self, workload: Callable[[str], Workload | None],
                 workloads: Callable[[], Iterable[Workload]],
                 mesh: Callable[[], MeshSnapshot], trust_domain: str,
                 windows: TelemetryWindows | None = None) -> None:
        self._workload = workload
        self._workloads = workloads
        self._mesh = mesh
        self._trust_domain = trust_domain
        self.windows = windows or TelemetryWindows()
        # Every sidecar that reported within the horizon, also after it left: its traffic
        # still belongs to its service.
        self.nodes: dict[str, NodeInfo] = {}
        # Replicas on a shared store: asks the others for what their agents reported.
        self.peers: Callable[[float, float], Awaitable[PeerAnswers]] | None = None

    def receive(self, node_id: str, series: Series) -> None:
        workload = self._workload(node_id)
        if workload is None:
            raise NotFoundError(f"no workload {node_id} is registered",
                                hint="the agent re-registers on its own")
        if len(series) > MAX_SERIES_PER_REPORT:
            raise UsageError(f"telemetry report from {node_id} has {len(series)} series",
                             hint=f"at most {MAX_SERIES_PER_REPORT}")
        self.nodes[node_id] = self._node_info(workload)
        self.windows.record(node_id, series)

    def record_refusals(self, node_id: str, hosts: Mapping[str, int]) -> None:
        """Calls of ``node_id`` to hosts in no scope that its sidecar refused (REGISTRY_ONLY),
        by host: from its access log, so they do not count as a report of its agent. At most
        MAX_REFUSED_HOSTS hosts each time; the rest count under OTHER_HOSTS."""
        workload = self._workload(node_id)
        if workload is None:
            return
        counted: dict[str, int] = {}
        for host, count in sorted(hosts.items(), key=lambda item: -item[1]):
            key = host if len(counted) < MAX_REFUSED_HOSTS else OTHER_HOSTS
            counted[key] = counted.get(key, 0) + count
        self.nodes[node_id] = self._node_info(workload)
        self.windows.record(node_id, [(SeriesKey(REFUSED, host), {"rq5": n, "refused": n})
                                      for host, n in counted.items()], report=False)

    def record_trials(self, node_id: str, series: Series) -> None:
        """Where ``node_id``'s calls would have gone with DryRun HTTPRoutes in force
        (services/trials.py): from its access log, not a report of its agent."""
        workload = self._workload(node_id)
        if workload is None or not series:
            return
        self.nodes[node_id] = self._node_info(workload)
        self.windows.record(node_id, series, report=False)

    def forget(self, node_id: str) -> None:
        self.windows.forget(node_id)

    def window(self, seconds: float, peers: PeerAnswers | None = None) -> Window:
        """The last ``seconds`` of reports: this replica's, plus ``peers``' (the other
        replicas' answers, when asked)."""
        horizon = self.windows.horizon_s
        if not 0 < seconds <= horizon:
            raise UsageError(f"the window must be between 1s and {horizon:g}s, "
                             f"got {seconds:g}s", hint="tulle keeps the last 15 minutes")
        local = self.windows.window(seconds)
        return merge(local, peers.answered.values()) if peers else local

    async def ask_peers(self, seconds: float, timeline_s: float = 0.0) -> PeerAnswers:
        """What the other replicas received (nothing to ask without replicas)."""
        return await self.peers(seconds, timeline_s) if self.peers else PeerAnswers()

    def all_nodes(self, peers: PeerAnswers | None = None) -> dict[str, NodeInfo]:
        nodes = dict(self.nodes)
        for peer in (peers.answered.values() if peers else ()):
            for node, info in peer.nodes.items():
                nodes.setdefault(node, info)
        return nodes

    def timeline(self, seconds: float, peers: PeerAnswers | None = None
                 ) -> list[tuple[float, float, Sample]]:
        local = self.windows.slots(seconds)
        if not peers or not peers.answered:
            return local
        return merge_slots(local, peers.answered.values(), self.windows.slot_s)

    def sparkline_rows(self, seconds: float, peers: PeerAnswers | None = None
                       ) -> dict[str, Any]:
        """Requests and failures per second of each service and workload over ``seconds``,
        in equal buckets (the dashboard's sparklines)."""
        return {**sparklines(self.timeline(seconds, peers), self.all_nodes(peers), seconds),
                **_missing(peers)}

    def raw(self, seconds: float, timeline_s: float = 0.0) -> dict[str, Any]:
        """This replica's own reports, for another replica to add to its answers."""
        return encode(self.window(seconds), self.nodes,
                      self.windows.slots(timeline_s) if timeline_s else ())

    # -- queries -------------------------------------------------------------------------------

    def workload_rows(self, query: TelemetryQuery, peers: PeerAnswers | None = None
                      ) -> dict[str, Any]:
        window = self.window(query.window_s, peers)
        nodes_seen = self.all_nodes(peers)
        nodes = {n: i for n, i in self._live_nodes(nodes_seen).items()
                 if _wanted(i.namespace, i.name, query.namespace, query.name)}
        rows = workload_rows(window, nodes)
        # The registry's word on each instance, so that an instance with nothing listening
        # reads "starting" or "not-ready" beside its empty figures, as in `get workloads`
        # and `diagnose` (TUL1002); "gone" for one that left within the window.
        states = {w.node_id: w.state.value for w in self._workloads()}
        for row in rows:
            row["state"] = states.get(f"{row['name']}.{row['namespace']}", "gone")
        return {"windowSeconds": window.seconds, "workloads": rows, **_missing(peers)}

    def service_rows(self, query: TelemetryQuery, peers: PeerAnswers | None = None
                     ) -> dict[str, Any]:
        window = self.window(query.window_s, peers)
        nodes_seen = self.all_nodes(peers)
        services = {(ref.namespace, ref.name) for ref, service in self._mesh().services.items()
                    if not service.selector}
        services |= {(i.namespace, i.service) for i in nodes_seen.values()}
        wanted = {s for s in services if _wanted(s[0], s[1], query.namespace, query.name)}
        if query.name is not None and not wanted:
            raise NotFoundError(f"no service {query.name} in namespace "
                                f"{query.namespace or 'default'}",
                                hint="list them with `tulle get services`")
        rows = service_rows(window, nodes_seen, wanted, self._subsets())
        mesh = self._mesh()
        for row in rows:  # what the figures mean: requests, or connections only (tcp)
            service = mesh.services.get(ServiceRef(row["namespace"], row["name"]))
            row["protocol"] = service.protocol if service else "http"
        # Calls out of the mesh that AuthorizationPolicies denied in the callers' sidecars.
        egress = [] if query.name is not None else egress_authorization(
            window, policy_hosts(mesh.external_authz))
        return {"windowSeconds": window.seconds, "services": rows,
                "egressAuthorization": egress, **_missing(peers)}

    def route_rows(self, query: TelemetryQuery, peers: PeerAnswers | None = None
                   ) -> dict[str, Any]:
        window = self.window(query.window_s, peers)
        if query.name is None:
            raise UsageError("name a service", hint="tulle routes SERVICE")
        mesh = self._mesh()
        ref = ServiceRef(query.namespace or "default", query.name)
        if ref not in mesh.services:
            raise NotFoundError(f"no service {ref.name} in namespace {ref.namespace}",
                                hint="list them with `tulle get services`")
        ordered: list[tuple[tuple[int, ...], int, tuple[str, str, str]]] = []
        for attached in mesh.routes.get(ref, ()):
            route = f"{attached.key.namespace}/{attached.key.name}"
            for index, rule in enumerate(attached.spec.rules):
                # In match order, as `describe service` lists them: a rule's place is that
                # of its most specific match (Gateway API precedence; ties keep their order).
                first = min(match_precedence(m) for m in rule.matches)
                ordered.append((first, len(ordered),
                                (route, rule_key(index, rule.name), rule.describe_matches())))
        rules = [entry for _, _, entry in sorted(ordered, key=lambda e: (e[0], e[1]))]
        return {"windowSeconds": window.seconds, "service": ref.name,
                "namespace": ref.namespace, "routes": route_rows(window, ref.host, rules),
                **_missing(peers)}

    def slo_rows(self, query: TelemetryQuery, seen: PeerAnswers | None = None,
                 recent: PeerAnswers | None = None) -> dict[str, Any]:
        """Every ServiceLevelObjective's indicators over the window (and its last 5
        minutes): ``seen`` and ``recent`` are the other replicas' answers for each."""
        window = self.window(query.window_s, seen)
        last = self.window(min(RECENT_S, query.window_s), recent)
        slos = [slo for slo in mesh_slos((k, r.spec) for k, r in self._mesh().resources.items())
                if _wanted(slo.key.namespace, slo.key.name, query.namespace, query.name)]
        if query.name is not None and not slos:
            raise NotFoundError(f"no ServiceLevelObjective {query.name} in namespace "
                                f"{query.namespace or 'default'}",
                                hint="list them with `tulle get slo -A`")
        return {"windowSeconds": window.seconds, "recentSeconds": last.seconds,
                "slos": slo_rows(slos, window, last, self.all_nodes(seen)),
                **_missing(seen)}

    def edge_rows(self, query: TelemetryQuery, peers: PeerAnswers | None = None
                  ) -> dict[str, Any]:
        window = self.window(query.window_s, peers)
        nodes_seen = self.all_nodes(peers)
        mesh = self._mesh()
        identities = {ref.host: service.identities for ref, service in mesh.services.items()}
        rows = edge_rows(window, nodes_seen, identities, bool(mesh.identity.trust_domain))
        if query.namespace is not None:
            rows = [r for r in rows if query.namespace in (r["source"].get("namespace"),
                                                           r["destination"].get("namespace"))]
        return {"windowSeconds": window.seconds, "edges": rows, **_missing(peers)}

    def _subsets(self) -> dict[tuple[str, str], list[str]]:
        """(namespace, service) -> the hosts of its subsets: Services with a selector that
        names it ("service": NAME), or whose selected instances are its instances."""
        workloads = list(self._workloads())
        out: dict[tuple[str, str], list[str]] = {}
        for ref, service in sorted(self._mesh().services.items()):
            if not service.selector:
                continue
            named = dict(service.selector).get("service")
            parents = {named} if named else {
                w.service for w in workloads
                if w.namespace == ref.namespace and w.matches(service.selector)}
            for parent in sorted(parents):
                out.setdefault((ref.namespace, parent), []).append(ref.host)
        return out

    def _live_nodes(self, seen: dict[str, NodeInfo]) -> dict[str, NodeInfo]:
        """Registered workloads (reporting or not yet), plus ones that left recently."""
        out = dict(seen)
        for workload in self._workloads():
            out.setdefault(workload.node_id, self._node_info(workload))
        return out

    def _node_info(self, workload: Workload) -> NodeInfo:
        identity = spiffe_id(self._trust_domain, workload.namespace, workload.account) \
            if self._trust_domain else ""
        return NodeInfo(workload.name, workload.namespace, workload.service, identity)


def _missing(peers: PeerAnswers | None) -> dict[str, Any]:
    """Replicas that did not answer: their agents' reports are not in the figures."""
    if not peers or not peers.missing:
        return {}
    return {"replicasMissing": [{"replica": r, "why": why}
                                for r, why in sorted(peers.missing.items())]}


def _wanted(namespace: str, name: str, want_namespace: str | None,
            want_name: str | None) -> bool:
    return (want_namespace is None or namespace == want_namespace) and \
        (want_name is None or name == want_name)
