"""Property: whatever tulle accepts, Envoy accepts. Random valid HTTPRoutes, TrafficPolicies,
AuthorizationPolicies, ExternalServices and outbound modes are applied to a live mesh (one
Delta and one SotW sidecar); every one must be accepted by tulle and ACKed, never NACKed, by
both proxies.

CI runs a fixed, derandomized set of examples. For a wider search:
TULLE_PROPERTY_EXAMPLES=2000 pytest tests/e2e/test_envoy_accepts.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.e2e.strategies import (
    authorization_policy,
    external_service,
    http_route,
    outbound_mode,
    traffic_policy,
)
from tests.support.mesh import Mesh
from tests.support.outside import server_cert
from tulle.errors import ConfigError

pytestmark = pytest.mark.envoy

EXAMPLES = int(os.environ.get("TULLE_PROPERTY_EXAMPLES", "60"))
WIDE = "TULLE_PROPERTY_EXAMPLES" in os.environ

SERVICES = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: authors}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-v2}
spec: {selector: {service: books, version: v2}}
"""


def _apply(mesh: Mesh, manifests: list[dict[str, Any]]) -> None:
    documents = [{"source": f"generated#{i}", "manifest": m} for i, m in enumerate(manifests)]
    try:
        mesh.api.post("/v1/resources/apply", {"documents": documents})
    except ConfigError as exc:
        raise AssertionError(f"tulle refused a valid resource:\n{exc}\n"
                             f"{json.dumps(manifests, indent=1)}") from exc
    mesh.sync()
    nacks = mesh.nacks()
    assert not nacks, (f"Envoy refused what tulle accepted:\n{nacks[-1]['message'][-600:]}\n"
                       f"{json.dumps(manifests, indent=1)}")


def test_envoy_accepts_every_valid_route_and_policy(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=SERVICES)
    mesh.run("books", name="books-1", extra=("--version", "v2"))
    mesh.run("web", name="web-1", extra=("--xds-protocol", "sotw"))
    ca_pem = server_cert("ca.example.com").ca_pem

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not WIDE,
              suppress_health_check=list(HealthCheck), database=None,
              # Shrinking against a live mesh is slow; the failure prints the manifests.
              phases=(Phase.explicit, Phase.generate))
    @given(route=http_route(), policy=traffic_policy(), authz=authorization_policy(),
           external=external_service(ca_pem), outbound=outbound_mode())
    def check(route: dict[str, Any], policy: dict[str, Any], authz: dict[str, Any],
              external: dict[str, Any], outbound: dict[str, Any]) -> None:
        _apply(mesh, [route, policy, authz, external, outbound])

    check()
    proxies = mesh.api.get("/v1/proxies")
    assert len(proxies) == 2
    assert all(t["state"] == "SYNCED" for p in proxies for t in p["types"].values()), proxies
