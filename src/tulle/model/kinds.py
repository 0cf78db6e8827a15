"""The resource kinds tulle accepts: a declared list, not a registry filled at import time."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tulle.model.authz import AuthorizationPolicySpec
from tulle.model.external import ExternalServiceSpec
from tulle.model.gateway import GatewaySpec
from tulle.model.httproute import HTTPRouteSpec
from tulle.model.meshconfig import MESH_NAME, MeshSpec
from tulle.model.policy import TrafficPolicySpec
from tulle.model.rollout import RolloutSpec
from tulle.model.service import ServiceSpec
from tulle.model.slo import ServiceLevelObjectiveSpec


@dataclass(frozen=True)
class KindInfo:
    kind: str
    api_version: str
    plural: str
    aliases: tuple[str, ...]
    spec_type: type[Any]
    summary: str
    # Other apiVersions accepted on input, for users who copy manifests between versions.
    also_accepts: tuple[str, ...] = field(default=())
    # Mesh-wide kinds have no namespace; their key's namespace is "".
    namespaced: bool = True
    # A singleton kind accepts only this name.
    only_name: str | None = None

    @property
    def api_versions(self) -> tuple[str, ...]:
        return (self.api_version, *self.also_accepts)

    def names(self) -> tuple[str, ...]:
        return (self.kind.lower(), self.plural, *self.aliases)


SERVICE = KindInfo(
    kind="Service",
    api_version="tulle.io/v1alpha1",
    plural="services",
    aliases=("svc",),
    spec_type=ServiceSpec,
    summary="explicit settings (protocol) for a service that workloads register under",
)

HTTP_ROUTE = KindInfo(
    kind="HTTPRoute",
    api_version="gateway.networking.k8s.io/v1",
    plural="httproutes",
    aliases=("route", "routes"),
    spec_type=HTTPRouteSpec,
    summary="HTTP routing for a service, in the Gateway API HTTPRoute shape",
    also_accepts=("gateway.networking.k8s.io/v1beta1",),
)

MESH = KindInfo(
    kind="Mesh",
    api_version="tulle.io/v1alpha1",
    plural="meshes",
    aliases=("mesh",),
    spec_type=MeshSpec,
    summary="mesh-wide settings: the default mTLS mode, certificate lifetimes and tracing",
    namespaced=False,
    only_name=MESH_NAME,
)

TRAFFIC_POLICY = KindInfo(
    kind="TrafficPolicy",
    api_version="tulle.io/v1alpha1",
    plural="trafficpolicies",
    aliases=("trafficpolicy", "policy", "policies", "tp"),
    spec_type=TrafficPolicySpec,
    summary="resilience and protection for a service or route: pools, retry budgets, outlier "
            "detection, load balancing, rate limits, fault injection, timeouts",
)

AUTHORIZATION_POLICY = KindInfo(
    kind="AuthorizationPolicy",
    api_version="tulle.io/v1alpha1",
    plural="authorizationpolicies",
    aliases=("authorizationpolicy", "authz", "ap"),
    spec_type=AuthorizationPolicySpec,
    summary="who may call a service, a namespace or the whole mesh: ALLOW and DENY rules on "
            "callers and requests, and default deny",
)

EXTERNAL_SERVICE = KindInfo(
    kind="ExternalService",
    api_version="tulle.io/v1alpha1",
    plural="externalservices",
    aliases=("externalservice", "external", "es"),
    spec_type=ExternalServiceSpec,
    summary="a host outside the mesh that workloads may call: ports, protocol, TLS "
            "origination",
)

GATEWAY = KindInfo(
    kind="Gateway",
    api_version="gateway.networking.k8s.io/v1",
    plural="gateways",
    aliases=("gateway", "gw"),
    spec_type=GatewaySpec,
    summary="a way into the mesh from outside: listeners that `tulle gateway run` serves, "
            "routed by the HTTPRoutes that name it",
    also_accepts=("gateway.networking.k8s.io/v1beta1",),
)

SERVICE_LEVEL_OBJECTIVE = KindInfo(
    kind="ServiceLevelObjective",
    api_version="tulle.io/v1alpha1",
    plural="servicelevelobjectives",
    aliases=("servicelevelobjective", "slo", "slos"),
    spec_type=ServiceLevelObjectiveSpec,
    summary="an objective for a service or a route rule: the share of requests that succeed "
            "or answer within a threshold, over a window",
)

ROLLOUT = KindInfo(
    kind="Rollout",
    api_version="tulle.io/v1alpha1",
    plural="rollouts",
    aliases=("rollout", "ro"),
    spec_type=RolloutSpec,
    summary="a canary version of a service, given more of its traffic step by step while it "
            "does as well as the stable version, and rolled back when it does not",
)

KINDS: tuple[KindInfo, ...] = (SERVICE, HTTP_ROUTE, TRAFFIC_POLICY, AUTHORIZATION_POLICY,
                               EXTERNAL_SERVICE, GATEWAY, SERVICE_LEVEL_OBJECTIVE, ROLLOUT,
                               MESH)


def find_kind(name: str, kinds: Iterable[KindInfo] = KINDS) -> KindInfo | None:
    """The kind called ``name`` (kind, plural or alias; any case), or None."""
    wanted = name.lower()
    for info in kinds:
        if wanted in info.names():
            return info
    return None


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` was most likely a typo of, if any is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None
