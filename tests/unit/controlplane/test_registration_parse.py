"""Parsing a registration: strict, and cheap (the pydantic adapter is built once, not per
registration: building it cost ~20 ms, 40 s for 2,000 workloads)."""

from __future__ import annotations

import json

import pytest

from tulle.controlplane.api import agents
from tulle.errors import ConfigError, UsageError


def body(**overrides: object) -> bytes:
    registration = {"name": "books-1", "namespace": "default", "service": "books",
                    "outboundPort": 15001, "agentPort": 15020, "pid": 1,
                    "xdsToken": "x" * 32, "agentToken": "a" * 32, **overrides}
    return json.dumps(registration).encode()


def test_registrations_share_one_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydantic

    agents._registration_adapter.cache_clear()
    built = []
    real = pydantic.TypeAdapter

    def counting(*args: object, **kwargs: object) -> object:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pydantic, "TypeAdapter", counting)
    for i in range(5):
        workload, _ = agents.parse_registration(body(name=f"books-{i}"))
        assert workload.name == f"books-{i}"
    assert len(built) == 1


def test_a_bad_registration_is_refused_by_field() -> None:
    with pytest.raises(ConfigError, match="invalid registration"):
        agents.parse_registration(body(outboundPort="x"))


def test_a_gateway_registration_keeps_its_binding_and_round_trips() -> None:
    gateway = {"port": 8443, "listenAddress": "127.0.0.1", "tlsCert": "/etc/edge/tls.crt",
               "tlsKey": "/etc/edge/tls.key"}
    workload, _ = agents.parse_registration(body(name="edge-gw", service="edge",
                                                 gateway=gateway))
    assert workload.gateway is not None and workload.gateway.port == 8443
    assert workload.to_dict()["gateway"] == gateway
    assert type(workload).from_dict(workload.to_dict()).gateway == workload.gateway


@pytest.mark.parametrize(("gateway", "extra", "says"), [
    ({"port": 8443, "listenAddress": "example.com"}, {}, "is not an IP address"),
    ({"port": 8443, "tlsCert": "/c.pem"}, {}, "needs both a certificate and a key"),
    ({"port": 8443, "tlsCert": "c.pem", "tlsKey": "/k.pem"}, {}, "must be an absolute path"),
    ({"port": 8443, "tlsCert": "/a/../c.pem", "tlsKey": "/k.pem"}, {},
     "must be an absolute path"),
    ({"port": 8443}, {"appPort": 8080}, "a gateway runs no application"),
], ids=["listen address", "cert without key", "relative path", "dot-dot", "with an app"])
def test_a_bad_gateway_registration_is_refused(gateway: dict[str, object],
                                               extra: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        agents.parse_registration(body(gateway=gateway, **extra))
