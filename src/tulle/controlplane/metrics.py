"""The control plane's own Prometheus metrics, served at ``/metrics`` on the API port.

Readers: Prometheus, with the API token or the read-only metrics token (see api.py). Names,
types and labels are a public contract (docs/observability.md, dashboards/grafana/): the
families are declared here as data, and a unit test checks the dashboards against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tulle import __version__
from tulle.identity.ca import CertificateAuthority
from tulle.model.kinds import KINDS
from tulle.model.mesh import MeshSnapshot
from tulle.model.resource import Resource
from tulle.model.workload import Workload, WorkloadState
from tulle.telemetry.prometheus import Family, render
from tulle.telemetry.windows import TelemetryWindows
from tulle.xds.admission import StreamEventKind
from tulle.xds.hub import ProxyHub
from tulle.xds.sync import SyncState
from tulle.xds.types import PUSH_ORDER, short_name

# name -> (type, help, label names). Counters end in _total.
CONTROLPLANE_FAMILIES: Mapping[str, tuple[str, str, tuple[str, ...]]] = {
    "tulle_controlplane_build_info": (
        "gauge", "Always 1; the version label is tulle's version.", ("version",)),
    "tulle_controlplane_start_time_seconds": (
        "gauge", "When the control plane started, in seconds since the epoch.", ()),
    "tulle_controlplane_mesh_version": (
        "gauge", "Version of the mesh snapshot in force; it grows with every config change.",
        ()),
    "tulle_controlplane_store_revision": (
        "gauge", "Revision of the resource store; it grows with every stored change.", ()),
    "tulle_controlplane_resources": (
        "gauge", "Stored resources, by kind.", ("kind",)),
    "tulle_controlplane_services": (
        "gauge", "Services in the mesh, declared or derived from workloads.", ()),
    "tulle_controlplane_workloads": (
        "gauge", "Registered workloads, by namespace and state.", ("namespace", "state")),
    "tulle_controlplane_proxies": (
        "gauge", "Proxies by xDS sync state, the worst of their types' in the order "
                 "DISCONNECTED, NACKED, STALE, PENDING, SYNCED, NOT_SENT; DISCONNECTED: a "
                 "registered workload whose proxy has no xDS stream.", ("state",)),
    "tulle_controlplane_xds_pushes_total": (
        "counter", "xDS responses sent to proxies, by type: one push of one type to one "
                   "proxy.", ("type",)),
    "tulle_controlplane_xds_nacks_total": (
        "counter", "xDS responses proxies rejected (NACKs), by type.", ("type",)),
    "tulle_controlplane_xds_streams_refused_total": (
        "counter", "ADS streams the control plane refused, by reason: duplicate (the node "
                   "already had a live stream: someone else presented its xDS credential), "
                   "silent (no first request in time), unauthenticated.", ("reason",)),
    "tulle_controlplane_certificates_issued_total": (
        "counter", "Workload certificates signed by the mesh CA.", ()),
    "tulle_controlplane_ca_expiry_timestamp_seconds": (
        "gauge", "When each trust anchor (role root) and the issuer (role issuer) expire, in "
                 "seconds since the epoch.", ("role", "id")),
    "tulle_controlplane_telemetry_reports_total": (
        "counter", "Telemetry reports received from agents.", ()),
    "tulle_controlplane_telemetry_series": (
        "gauge", "Telemetry series kept in the control plane's 15-minute windows.", ()),
}


@dataclass(frozen=True)
class MetricSources:
    """Everything the control plane's metrics read, as of each scrape."""

    started_at: float
    mesh: Callable[[], MeshSnapshot]
    store_revision: Callable[[], int]
    resources: Callable[[], Iterable[Resource]]
    workloads: Callable[[], list[Workload]]
    hub: ProxyHub  # proxy states, pushes and NACKs
    certificates_issued: Callable[[], int]
    ca: CertificateAuthority
    windows: TelemetryWindows


def _families() -> dict[str, Family]:
    return {name: Family(name, kind, text)
            for name, (kind, text, _) in CONTROLPLANE_FAMILIES.items()}


def _counts(values: Iterable[str], keys: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(keys, 0)
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def controlplane_families(sources: MetricSources) -> list[Family]:
    f = _families()
    mesh = sources.mesh()
    f["tulle_controlplane_build_info"].add((("version", __version__),), 1)
    f["tulle_controlplane_start_time_seconds"].add((), round(sources.started_at, 3))
    f["tulle_controlplane_mesh_version"].add((), mesh.version)
    f["tulle_controlplane_store_revision"].add((), sources.store_revision())
    f["tulle_controlplane_services"].add((), len(mesh.services))

    kinds = _counts((r.kind for r in sources.resources()), (k.kind for k in KINDS))
    for kind, count in sorted(kinds.items()):
        f["tulle_controlplane_resources"].add((("kind", kind),), count)

    workloads = sources.workloads()
    for namespace in sorted({w.namespace for w in workloads}):
        states = _counts((w.state.value for w in workloads if w.namespace == namespace),
                         (s.value for s in WorkloadState))
        for state, count in states.items():
            f["tulle_controlplane_workloads"].add(
                (("namespace", namespace), ("state", state)), count)

    # Every state, zeros included, so that each series exists before it is first non-zero.
    views = sources.hub.sync_views(registered=(w.node_id for w in workloads))
    proxies = _counts((v.state.value for v in views), (s.value for s in SyncState))
    for state, count in proxies.items():
        f["tulle_controlplane_proxies"].add((("state", state),), count)

    for family, counter in (("tulle_controlplane_xds_pushes_total", sources.hub.responses.by_type),
                            ("tulle_controlplane_xds_nacks_total", sources.hub.nacks.by_type)):
        for type_url in PUSH_ORDER:
            f[family].add((("type", short_name(type_url)),), counter.get(type_url, 0))

    refused = sources.hub.stream_events.totals
    for event_kind in StreamEventKind:
        if event_kind.refused:
            f["tulle_controlplane_xds_streams_refused_total"].add(
                (("reason", event_kind.value),), refused.get(event_kind, 0))

    f["tulle_controlplane_certificates_issued_total"].add((), sources.certificates_issued())
    for anchor in sources.ca.anchors:
        f["tulle_controlplane_ca_expiry_timestamp_seconds"].add(
            (("role", "root"), ("id", anchor.id)), round(anchor.not_after))
    issuer = sources.ca.issuer
    f["tulle_controlplane_ca_expiry_timestamp_seconds"].add(
        (("role", "issuer"), ("id", issuer.id)), round(issuer.not_after))

    windows = sources.windows
    f["tulle_controlplane_telemetry_reports_total"].add((), windows.reports)
    f["tulle_controlplane_telemetry_series"].add((), windows.series_count())
    return list(f.values())


def controlplane_metrics(sources: MetricSources) -> str:
    """The Prometheus text (format 0.0.4) of the control plane, as of now."""
    return render(controlplane_families(sources))
