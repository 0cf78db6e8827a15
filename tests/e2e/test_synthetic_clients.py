"""The benchmark's synthetic ADS clients hold what real Envoy sidecars hold, in the same mesh.

Each synthetic proxy is registered like the real one it shadows (same service, outbound port
and upstream binding, so the control plane compiles byte-identical listeners, clusters, routes
and endpoints for both; only the identity certificate differs). After start-up and after a
round of changes (an endpoint added, a route applied, a service deleted), per xDS type the
synthetic client holds as many resources as the real Envoy's config_dump shows, at the version
the real Envoy ACKed; and the control plane's tracker records, for the synthetic proxy, the
version the client computes from what it holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from benchmarks.fleet import FleetWorker
from benchmarks.synthmesh import SyntheticWorkload, WorkloadSpec, register

from tests.support.mesh import Mesh
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

T = TypeVar("T")
# SDS: each proxy has its own certificate; LDS: its own access-log credential (the outbound
# listener's log of refused egress).
SAME_CONTENT = ("CDS", "EDS", "SRDS", "RDS")
DUMP_SECTIONS = {  # config_dump section -> (xDS type, list of dynamic resources)
    "ClustersConfigDump": ("CDS", "dynamic_active_clusters"),
    "EndpointsConfigDump": ("EDS", "dynamic_endpoint_configs"),
    "ListenersConfigDump": ("LDS", "dynamic_listeners"),
    "RoutesConfigDump": ("RDS", "dynamic_route_configs"),
    "ScopedRoutesConfigDump": ("SRDS", "dynamic_scoped_route_configs"),
    "SecretsConfigDump": ("SDS", "dynamic_active_secrets"),
}

SERVICES = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec: {}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: reviews}
spec: {}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: ledger}
spec: {protocol: tcp}
"""

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  parentRefs: [{name: books}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /new}}]
    backendRefs: [{name: reviews}]
  - backendRefs: [{name: books}]
"""


def envoy_counts(mesh: Mesh, name: str) -> dict[str, int]:
    dump = json.loads(mesh.admin(name, "config_dump", include_eds="true"))
    counts = {}
    for section in dump["configs"]:
        kind = section["@type"].rsplit(".", 1)[-1]
        if kind in DUMP_SECTIONS:
            short, key = DUMP_SECTIONS[kind]
            entries = section.get(key, [])
            # Scopes come grouped by the listener's scoped routes (one group here).
            counts[short] = sum(len(e.get("scoped_route_configs", [])) for e in entries) \
                if short == "SRDS" else len(entries)
    return counts


def tracker(mesh: Mesh) -> dict[str, dict[str, str]]:
    """Per proxy and type, the version the control plane recorded as ACKed."""
    return {s["node"]: {t: v["ackedVersion"] for t, v in s["types"].items()}
            for s in mesh.api.get("/v1/proxies")}


async def blocking(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


def compare(mesh: Mesh, fleet: FleetWorker, pairs: dict[str, str]) -> None:
    """``pairs``: real sidecar name -> node id of its synthetic twin."""
    acked = tracker(mesh)
    held = fleet.state(list(pairs.values()))
    for real, node in pairs.items():
        mine = held[node]
        counts = envoy_counts(mesh, real)
        real_acked = acked[f"{real}.default"]
        # As many resources of each type as the real Envoy holds...
        assert {t: s["count"] for t, s in mine.items()} == counts, (real, counts, mine)
        # ...ACKed at the same versions (the same content, but for the certificate)...
        for short in SAME_CONTENT:
            assert mine[short]["acked"] == real_acked[short], (real, short)
        assert mine["SDS"]["acked"] != real_acked["SDS"]
        assert mine["LDS"]["acked"] != real_acked["LDS"]
        # ...and exactly the resources the control plane intends for it.
        intended = mesh.api.get(f"/v1/proxies/{node}/intended")["versions"]
        assert {t: s["version"] for t, s in mine.items()} == intended, node


async def settled(mesh: Mesh, fleet: FleetWorker, nodes: list[str]) -> None:
    """Every proxy (real and synthetic) ACKed the latest config, and the synthetic clients
    report the versions the tracker recorded as ACKed by them (the client notes an ACK as it
    writes it; the control plane reads it a moment later)."""
    await blocking(mesh.sync)
    for _ in range(200):
        acked = await blocking(tracker, mesh)
        held = fleet.state(nodes)
        if all({t: s["acked"] for t, s in held[n].items()} == acked[n] for n in nodes):
            return
        await asyncio.sleep(0.05)  # the poll interval of this wait on a condition
    raise AssertionError(f"synthetic clients and tracker disagree: {held} vs {acked}")


def test_synthetic_clients_hold_what_real_sidecars_hold(mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=SERVICES)
    mesh.run("books", name="books-1")
    upstreams = {}
    for name, protocol in (("web-delta", "delta"), ("web-sotw", "sotw")):
        upstreams[name] = free_port()
        mesh.run("web", name=name, app=False,
                 extra=("--upstream", f"books:{upstreams[name]}", "--xds-protocol", protocol))

    async def scenario() -> None:
        fleet = FleetWorker()
        twins: list[SyntheticWorkload] = []
        try:
            for slot, real in enumerate(("web-delta", "web-sotw")):
                registered = await blocking(mesh.workload, real)
                spec = WorkloadSpec(f"twin-{real}", "web", slot, registered["xdsProtocol"],
                                    app=False, outbound_port=registered["outboundPort"],
                                    upstreams=(("books", upstreams[real]),))
                twins.append(await register(mesh.paths, spec, tmp_path / "synthetic"))
            connected = await fleet.connect([t.proxy for t in twins], timeout=30)
            assert not connected["errors"], connected
            pairs = {"web-delta": twins[0].node_id, "web-sotw": twins[1].node_id}
            assert {t.proxy.protocol for t in twins} == {"delta", "sotw"}
            await settled(mesh, fleet, list(pairs.values()))
            await blocking(compare, mesh, fleet, pairs)
            before = fleet.state(list(pairs.values()))

            # An endpoint added, a route applied, a service deleted (a removal to notice).
            mesh.run("books", name="books-2")
            await blocking(lambda: mesh.cli("apply", "-f", "-", stdin=ROUTE))
            await blocking(lambda: mesh.cli("delete", "service", "ledger"))
            await settled(mesh, fleet, list(pairs.values()))
            await blocking(compare, mesh, fleet, pairs)
            after = fleet.state(list(pairs.values()))
            for node in pairs.values():
                assert after[node]["CDS"]["count"] == before[node]["CDS"]["count"] - 1
                assert "outbound|ledger.default" in before[node]["CDS"]["names"]
                assert "outbound|ledger.default" not in after[node]["CDS"]["names"]
                for short in ("EDS", "SRDS", "RDS"):
                    assert after[node][short]["version"] != before[node][short]["version"]
            assert not fleet.errors(), fleet.errors()
        finally:
            await fleet.disconnect()
            await asyncio.gather(*(t.close() for t in twins))

    asyncio.run(scenario())
