"""TrafficPolicy manifests for traffic-management tests: as YAML text for the parse helpers of
documents.py, and as mappings for the mesh helpers of tests/unit/xds/meshes.py."""

from __future__ import annotations

import json
from typing import Any

Manifest = dict[str, Any]

ROUTE_GROUP = "gateway.networking.k8s.io"

POLICY_HEAD = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: shop}
"""


def to_service(name: str = "books", **extra: Any) -> Manifest:
    """A targetRef to a Service; ``extra`` adds namespace, group, sectionName, ..."""
    return {"kind": "Service", "name": name} | extra


def to_route(name: str = "r", section: str | None = None, **extra: Any) -> Manifest:
    """A targetRef to an HTTPRoute, or to one of its rules by name."""
    out = {"kind": "HTTPRoute", "group": ROUTE_GROUP, "name": name} | extra
    if section is not None:
        out["sectionName"] = section
    return out


def policy_yaml(spec: object) -> str:
    """A TrafficPolicy shop/p with this spec, written as flow YAML (JSON is valid YAML)."""
    return POLICY_HEAD + "spec: " + json.dumps(spec) + "\n"


def traffic_policy(name: str, *targets: Manifest, namespace: str = "default",
                   **settings: Any) -> Manifest:
    """A TrafficPolicy manifest; ``settings`` are spec fields in YAML spelling
    (``connectionPool={...}``)."""
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"targetRefs": list(targets)} | settings}
