"""The agent's side of its control-plane session.

The session is one long-lived HTTP response; while it is open the workload is registered. If
the control plane restarts, the agent re-registers with the same credentials and ports (so its
Envoy, which keeps serving meanwhile, is recognised again) and re-sends its readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tulle.agent import http
from tulle.agent.remote import RemoteChannel
from tulle.errors import ControlPlaneUnavailable, IdentityError, TulleError, error_from_dict
from tulle.settings import is_loopback

log = logging.getLogger("tulle.agent")

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 1.0
# The control plane sends a heartbeat every 5 s: three missed, and the session is given up.
SILENCE_S = 15.0
CONNECT_TIMEOUT_S = 5.0  # to open a session (a frozen replica accepts, then never answers)


@dataclass(frozen=True)
class Abroad:
    """How an agent of this host's control plane reaches its replicas on other hosts: as an
    agent that joined from another host does, by the certificate its own replica issued.
    ``home``: the address this host's replica listens on for agents (a replica announcing it
    is on this host); ``key_dir``: the workload's identity directory, which a replica on
    another host needs named."""

    home: str
    key_dir: str
    channel: RemoteChannel


class ControlPlaneSession:
    def __init__(self, host: str, port: int, api_token: str,
                 registration: Mapping[str, Any],
                 on_message: Callable[[dict[str, Any]], None] = lambda message: None,
                 on_moved: Callable[[dict[str, Any]], None] = lambda replica: None,
                 remote: RemoteChannel | None = None,
                 abroad: Abroad | None = None) -> None:
        """``remote``: a control plane on another host (its identity port, over TLS);
        ``host``, ``port`` and ``api_token`` are then unused. ``abroad``: for an agent of
        this host's control plane, how to reach its replicas on other hosts."""
        self._on_message = on_message
        self._remote = remote
        self._abroad = abroad
        # The channel to the replica of the moment: None for this host's API (the token).
        self._via: RemoteChannel | None = remote
        self._on_moved = on_moved
        self._host = host
        self._port = port
        # The replicas to fail over to, in the order the sidecar's bootstrap lists their xDS
        # (the first registration's), so that the agent and its Envoy prefer the same one.
        self._replicas: list[dict[str, Any]] = []
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self._registration = dict(registration)
        self.node_id = f"{registration['name']}.{registration['namespace']}"
        self.state = "starting"  # what we want the control plane to believe
        self.reason = ""  # and why, when it is not ready
        self._stream: http.LineStream | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0

    async def open(self) -> dict[str, Any]:
        """Register; returns the first session line (workload record and bootstrap)."""
        first = await self._connect()
        self._replicas = [dict(r) for r in first.get("controlPlanes", ())]
        self._keeper = asyncio.create_task(self._keep())
        return first

    async def report(self, state: str, reason: str = "") -> dict[str, Any] | None:
        """Tell the control plane our state (and why, when not ready); retried after
        reconnects if it is away now."""
        self.state, self.reason = state, reason
        if self._stream is None:
            return None  # never registered
        try:
            return await self._send_state(state, reason)
        except (TulleError, OSError, http.HttpError, TimeoutError) as exc:
            log.warning("could not report state %s yet: %s", state, exc)
            return None

    def _channel(self) -> dict[str, Any]:
        """How to send the next request: TLS and the workload certificate to a control plane
        on another host, the API token to this host's."""
        if self._via is None:
            return {"headers": self._headers}
        return {"headers": self._via.headers(), "tls": self._via.tls(),
                "peer_uri": self._via.trust.control_plane_id}

    async def join_token(self) -> str:
        """A new join token for our identity (the registration's credentials vouch for us)."""
        if self._via is not None:
            raise IdentityError("an agent on another host renews with its certificate only",
                                hint="its certificate expired: make a join token on the "
                                     "control plane's host and start the workload again")
        try:
            response = await http.request_json(
                self._host, self._port, "POST", f"/v1/agent/workloads/{self.node_id}/join-token",
                {}, headers=self._headers, timeout=15.0)
        except (OSError, TimeoutError) as exc:
            raise ControlPlaneUnavailable(f"cannot reach the control plane: {exc}") from exc
        if response.status != 200:
            raise _error(response.status, response.body)
        return str(response.json()["joinToken"])

    async def send_telemetry(self, payload: dict[str, Any]) -> bool:
        """Report what changed since the last report; False if it did not arrive."""
        if self._stream is None:
            return False
        try:
            response = await http.request_json(
                self._host, self._port, "POST", f"/v1/agent/workloads/{self.node_id}/telemetry",
                payload, timeout=5.0, **self._channel())
        except (OSError, TimeoutError, http.HttpError, ssl.SSLError) as exc:
            log.debug("telemetry report failed: %s", exc)
            return False
        return response.status == 200

    async def close(self) -> None:
        """End the session: the control plane deregisters the workload."""
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._stream is not None:
            self._stream.close()

    async def _connect(self) -> dict[str, Any]:
        try:
            registration = self._registration
            if self._via is not None and self._via is not self._remote and self._abroad:
                registration = {**registration, "keyDir": self._abroad.key_dir}
            stream = await http.open_stream(self._host, self._port, "POST", "/v1/agent/sessions",
                                            registration, timeout=CONNECT_TIMEOUT_S,
                                            **self._channel())
        except (OSError, TimeoutError, ssl.SSLError, http.HttpError) as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control plane at {self._host}:{self._port}: {exc}",
                hint="start it with `tulle up`") from exc
        if self._via is not None:
            self._via.spent()  # redeemed or refused: a join token works once
        if stream.status != 200:
            body = b""
            with contextlib.suppress(OSError, http.HttpError, asyncio.IncompleteReadError):
                body = await stream.read_all()
            stream.close()
            raise _error(stream.status, body)
        lines = stream.lines()
        try:
            first_line = await asyncio.wait_for(anext(lines, None), CONNECT_TIMEOUT_S)
        except TimeoutError:
            stream.close()
            raise
        if first_line is None:
            stream.close()
            raise ControlPlaneUnavailable("the control plane closed the session at once")
        self._stream = stream
        self._lines = lines
        first: dict[str, Any] = json.loads(first_line)
        return first

    async def _keep(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closing:
            with contextlib.suppress(OSError, http.HttpError, asyncio.IncompleteReadError,
                                     StopAsyncIteration):
                while True:
                    try:
                        line = await asyncio.wait_for(anext(self._lines), SILENCE_S)
                    except TimeoutError:
                        # Not even a heartbeat: the control plane is frozen (or its host
                        # cut off) while the connection looks open. Go to another replica.
                        log.warning("no word from the control plane for %.0fs", SILENCE_S)
                        break
                    message = json.loads(line)
                    if "heartbeat" not in message:
                        self._on_message(message)
            if self._closing:
                return
            if self._stream is not None:
                self._stream.close()
            log.warning("lost the control plane session; reconnecting")
            while not self._closing:
                await asyncio.sleep(delay)
                if await self._reconnect():
                    delay = RECONNECT_MIN_S
                    break
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def _reconnect(self) -> bool:
        """One round: each replica once, in the bootstrap's order (just the one we know,
        without replicas); whether the session is back."""
        for replica in self._replicas or [{}]:
            before = (self._host, self._port, self._via)
            if replica:
                self._host, self._port, self._via = self._address_of(replica)
            try:
                first = await self._connect()
                if "probe" in first:  # a new control plane may say otherwise
                    self._on_message({"probe": first["probe"]})
                if first.get("controlPlanes"):  # replicas come and go: theirs is newer
                    self._replicas = [dict(r) for r in first["controlPlanes"]]
                self.reconnects += 1
                await self._send_state(self.state, self.reason)
            except (TulleError, OSError, http.HttpError, TimeoutError) as exc:
                if isinstance(exc, IdentityError):  # refused, not unreachable: say why
                    log.error("the control plane refuses this workload: %s", exc.message)
                else:
                    log.debug("reconnect to %s:%d failed: %s", self._host, self._port, exc)
                self._host, self._port, self._via = before
                continue
            if (self._host, self._port) != before[:2]:
                log.warning("control plane session moved to the replica at %s:%d",
                            self._host, self._port)
                self._on_moved(replica)
            else:
                log.warning("control plane session restored")
            return True
        return False

    def _address_of(self, replica: Mapping[str, Any]
                    ) -> tuple[str, int, RemoteChannel | None]:
        """Where and how this agent registers with ``replica``: a replica on this host at its
        API port with the token; one on another host at its identity port, at the address
        other hosts reach it on, over TLS with the workload's certificate."""
        agent_host = str(replica.get("agentHost") or replica["host"])
        if self._remote is not None:
            return agent_host, int(replica["identityPort"]), self._remote
        if self._abroad is None or agent_host == self._abroad.home or is_loopback(agent_host):
            return str(replica["host"]), int(replica["apiPort"]), None
        return agent_host, int(replica["identityPort"]), self._abroad.channel

    async def _send_state(self, state: str, reason: str = "") -> dict[str, Any]:
        try:
            response = await http.request_json(
                self._host, self._port, "POST", f"/v1/agent/workloads/{self.node_id}/state",
                {"state": state, "reason": reason}, timeout=15.0, **self._channel())
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ControlPlaneUnavailable(f"cannot reach the control plane: {exc}") from exc
        if response.status != 200:
            raise _error(response.status, response.body)
        result: dict[str, Any] = response.json()
        return result


def _error(status: int, body: bytes) -> TulleError:
    try:
        data = json.loads(body)
        return error_from_dict(data["error"])
    except (ValueError, KeyError, TypeError):
        return ControlPlaneUnavailable(f"the control plane answered HTTP {status}")
