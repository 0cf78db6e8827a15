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
from typing import Any

from tulle.agent import http
from tulle.agent.remote import RemoteChannel
from tulle.errors import ControlPlaneUnavailable, IdentityError, TulleError, error_from_dict

log = logging.getLogger("tulle.agent")

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 1.0
# The control plane sends a heartbeat every 5 s: three missed, and the session is given up.
SILENCE_S = 15.0
CONNECT_TIMEOUT_S = 5.0  # to open a session (a frozen replica accepts, then never answers)


class ControlPlaneSession:
    def __init__(self, host: str, port: int, api_token: str,
                 registration: Mapping[str, Any],
                 on_message: Callable[[dict[str, Any]], None] = lambda message: None,
                 on_moved: Callable[[dict[str, Any]], None] = lambda replica: None,
                 remote: RemoteChannel | None = None) -> None:
        """``remote``: a control plane on another host (its identity port, over TLS);
        ``host``, ``port`` and ``api_token`` are then unused."""
        self._on_message = on_message
        self._remote = remote
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
        if self._remote is None:
            return {"headers": self._headers}
        return {"headers": self._remote.headers(), "tls": self._remote.tls(),
                "peer_uri": self._remote.trust.control_plane_id}

    async def join_token(self) -> str:
        """A new join token for our identity (the registration's credentials vouch for us)."""
        if self._remote is not None:
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
            stream = await http.open_stream(self._host, self._port, "POST", "/v1/agent/sessions",
                                            self._registration, timeout=CONNECT_TIMEOUT_S,
                                            **self._channel())
        except (OSError, TimeoutError, ssl.SSLError, http.HttpError) as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control plane at {self._host}:{self._port}: {exc}",
                hint="start it with `tulle up`") from exc
        if self._remote is not None:
            self._remote.spent()  # redeemed or refused: a join token works once
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
            before = (self._host, self._port)
            if replica:
                self._host, self._port = self._address_of(replica)
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
                self._host, self._port = before
                continue
            if (self._host, self._port) != before:
                log.warning("control plane session moved to the replica at %s:%d",
                            self._host, self._port)
                self._on_moved(replica)
            else:
                log.warning("control plane session restored")
            return True
        return False

    def _address_of(self, replica: Mapping[str, Any]) -> tuple[str, int]:
        """Where this agent registers with ``replica``: its API port on this host; an agent
        on another host, its identity port at the address other hosts reach it on."""
        if self._remote is None:
            return str(replica["host"]), int(replica["apiPort"])
        return str(replica.get("agentHost") or replica["host"]), int(replica["identityPort"])

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
