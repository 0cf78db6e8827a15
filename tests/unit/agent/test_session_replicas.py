"""Which replica an agent registers with how: this host's at its API port with the token,
another host's at its identity port with the workload certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tulle.agent.remote import ControlPlaneUrl, RemoteChannel, Trust
from tulle.agent.session import Abroad, ControlPlaneSession

REGISTRATION = {"name": "web-1", "namespace": "default"}


def _channel() -> RemoteChannel:
    return RemoteChannel(ControlPlaneUrl("10.0.0.1", 0), Trust("", "mesh.local"), "",
                         lambda: (Path("/c"), Path("/k")))


ABROAD = Abroad("10.0.0.1", "/state/identity/web-1", _channel())
JOINED = _channel()


def _replica(agent_host: str) -> dict[str, Any]:
    return {"host": "127.0.0.1", "agentHost": agent_host, "apiPort": 7001,
            "identityPort": 7002, "xdsPort": 7003}


@pytest.mark.parametrize(("remote", "abroad", "replica", "expected"), [
    # Everything on loopback: the API port of each replica, with the token.
    (None, None, _replica("127.0.0.1"), ("127.0.0.1", 7001, None)),
    # This host's control plane listens for other hosts: a replica on this host (the same
    # agent address) still by its API port; one on another host by its identity port.
    (None, ABROAD, _replica("10.0.0.1"), ("127.0.0.1", 7001, None)),
    (None, ABROAD, _replica("10.0.0.2"), ("10.0.0.2", 7002, ABROAD.channel)),
    # An agent that joined from another host: every replica by its identity port.
    (JOINED, None, _replica("10.0.0.1"), ("10.0.0.1", 7002, JOINED)),
])
def test_the_replica_decides_the_channel(remote: RemoteChannel | None, abroad: Abroad | None,
                                         replica: dict[str, Any],
                                         expected: tuple[str, int, RemoteChannel | None]
                                         ) -> None:
    session = ControlPlaneSession("127.0.0.1", 7001, "api-token", REGISTRATION,
                                  remote=remote, abroad=abroad)
    assert session._address_of(replica) == expected


def test_an_agent_abroad_sends_no_api_token() -> None:
    session = ControlPlaneSession("127.0.0.1", 7001, "api-token", REGISTRATION,
                                  abroad=ABROAD)
    assert session._channel() == {"headers": {"Authorization": "Bearer api-token"}}
    session._host, session._port, session._via = session._address_of(_replica("10.0.0.2"))
    assert session._via is ABROAD.channel and ABROAD.channel.headers() == {}
