"""The apply precheck: one translation per proxy shape, not per service, and a translation
failure in any shape still refuses the apply."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import pytest

from tests.unit.xds.meshes import Manifest, mesh, parse, proxy, service, workload
from tulle.controlplane.configpath import Precheck
from tulle.errors import ApiError
from tulle.model.mesh import MeshIdentity, MeshSnapshot
from tulle.model.workload import Workload
from tulle.xds.compiler import ConfigCompiler, proxy_shape
from tulle.xds.config import ProxyConfig
from tulle.xds.generators import listeners
from tulle.xds.proxy import NO_LOGGING, ProxyInfo, ProxyLogging

IDENTITY = MeshIdentity("", "", MappingProxyType({}))


def rate_limit(target: str) -> Manifest:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": f"{target}-limit", "namespace": "default"},
            "spec": {"targetRefs": [{"kind": "Service", "name": target}],
                     "rateLimit": {"requests": 10, "interval": "1s"}}}


# 20 HTTP services of one shape; one TCP service, one rate-limited, one client with an
# upstream binding: 4 shapes in one namespace.
WORKLOADS = [*(workload(f"web{i}-1", address=f"10.0.0.{i}") for i in range(20)),
             workload("db-1", address="10.0.1.1"),
             workload("limited-1", address="10.0.1.2"),
             workload("cli-1", app_port=None, upstreams={"db": 7000})]
MANIFESTS = [*(service(f"web{i}") for i in range(20)), service("db", "tcp"),
             service("limited"), rate_limit("limited")]


class Counting(ConfigCompiler):
    def __init__(self) -> None:
        super().__init__()
        self.compiled: list[str] = []

    def compile(self, mesh: MeshSnapshot, proxy: ProxyInfo,
                logging: ProxyLogging = NO_LOGGING) -> ProxyConfig:
        self.compiled.append(proxy.node_id)
        return super().compile(mesh, proxy, logging)


def precheck(workloads: Sequence[Workload]) -> tuple[Precheck, Counting]:
    check = Precheck(lambda: workloads, lambda: IDENTITY, NO_LOGGING)
    counting = check._compiler = Counting()
    return check, counting


def test_the_precheck_translates_one_proxy_per_shape() -> None:
    check, compiler = precheck(WORKLOADS)
    check(parse(*MANIFESTS))
    # web*, db, limited, cli, and the namespace's stand-in client.
    assert len(compiler.compiled) == 5
    assert {"db-1.default", "limited-1.default", "cli-1.default",
            "precheck.default"} < set(compiler.compiled)


@pytest.mark.parametrize("broken", ["tcp", "rate limit"])
def test_a_failure_in_any_one_shape_refuses_the_apply(broken: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = listeners.inbound_listener

    def inbound_listener(*args: Any) -> Any:
        protocol, rate = args[3], args[5]
        if (broken == "tcp" and protocol == "tcp") or (broken == "rate limit" and rate):
            raise ValueError("a translation bug")
        return real(*args)

    monkeypatch.setattr(listeners, "inbound_listener", inbound_listener)
    check, _ = precheck(WORKLOADS)
    with pytest.raises(ApiError, match=r"could not translate.*a translation bug"):
        check(parse(*MANIFESTS))


@pytest.mark.parametrize(("a", "b", "same"), [
    ("web0-1", "web1-1", True),  # two services differing only by name
    ("web0-1", "db-1", False),  # protocol
    ("web0-1", "limited-1", False),  # rate limit
    ("web0-1", "cli-1", False),  # no application, an upstream binding
])
def test_proxy_shape(a: str, b: str, same: bool) -> None:
    snapshot = mesh(1, WORKLOADS, MANIFESTS)
    shape_a = proxy_shape(snapshot, proxy(snapshot, f"{a}.default"))
    shape_b = proxy_shape(snapshot, proxy(snapshot, f"{b}.default"))
    assert (shape_a == shape_b) is same
