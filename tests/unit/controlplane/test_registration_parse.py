"""Parsing a registration: strict, and cheap (the pydantic adapter is built once, not per
registration: building it cost ~20 ms, 40 s for 2,000 workloads)."""

from __future__ import annotations

import json

import pytest

from tulle.controlplane.api import agents
from tulle.errors import ConfigError


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
