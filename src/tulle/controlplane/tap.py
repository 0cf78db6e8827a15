"""``GET /v1/tap``: a live stream of requests, and what the config path needs from tap.

The response is NDJSON: one ``{"attached": ...}`` line once every tapped proxy has ACKed its
logger and connections accepted before have drained, then one ``{"request": ...}`` line per
request, ``{"heartbeat": ...}`` lines while
nothing happens, and ``{"end": ...}`` when ``max`` requests were sent. The session ends when the
client goes away (aiohttp cancels this handler); its loggers are removed on the next push.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.agent.envoy import DRAIN_TIME_S
from tulle.security import tokens_match
from tulle.tap.filters import parse_filter
from tulle.tap.hub import TapSession
from tulle.tap.targets import resolve_target, tapped_nodes
from tulle.xds.als import access_log_token
from tulle.xds.generators.access_logs import ProxyLogging, ProxyTaps
from tulle.xds.proxy import ProxyInfo

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

ATTACH_TIMEOUT_S = 10.0
# A connection keeps the listener config it was accepted with until the sidecar's drain time
# closes it: only after that does every request pass the new logger.
SETTLE_S = DRAIN_TIME_S + 0.2
HEARTBEAT_S = 5.0
ACCESS_LOG_FILE = "access.log"

# Every logger a proxy can get, so that an apply's precheck translates them all.
PRECHECK_LOGGING = ProxyLogging(ProxyTaps(inbound=True, outbound=True), "precheck",
                                "/precheck/" + ACCESS_LOG_FILE)


def proxy_logging(cp: ControlPlane, proxy: ProxyInfo) -> ProxyLogging:
    """The proxy's taps (from the plan of the current snapshot) and access-log path."""
    taps = cp.taps.taps_of(proxy.node_id)
    token = ""
    if taps:
        credentials = cp.registry.credentials(proxy.node_id)
        token = access_log_token(credentials.xds_token, proxy.node_id) if credentials else ""
    # Universal mode runs every workload on this host, in its directory under the state dir.
    path = cp.paths.workloads_dir / proxy.node_id / ACCESS_LOG_FILE
    return ProxyLogging(taps, token, str(path))


class TapReceiver:
    """The access-log service's view of the control plane: credentials and the tap hub."""

    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp

    def authenticate_access_log(self, node_id: str, token: str) -> bool:
        credentials = self._cp.registry.credentials(node_id)
        return credentials is not None and tokens_match(
            access_log_token(credentials.xds_token, node_id), token)

    def receive(self, node_id: str, entries: Sequence[accesslog_pb2.HTTPAccessLogEntry]
                ) -> None:
        self._cp.taps.receive(node_id, entries)


async def stream_tap(cp: ControlPlane, request: web.Request) -> web.StreamResponse:
    query = request.query
    if cp.rebuild_pending:
        cp.rebuild_now()  # a workload that has just registered can be tapped at once
    target = resolve_target(cp.mesh, query.get("target", ""),
                            query.get("namespace") or "default")
    tap_filter = parse_filter(query.get("path"), query.get("method"), query.get("status"),
                              query.get("max"))
    session = cp.taps.open(target, tap_filter)
    try:
        version = await cp.rebuild_shortly()
        nodes = tapped_nodes(target, cp.mesh)
        synced = await cp.hub.wait_synced(version, ATTACH_TIMEOUT_S, nodes)
        await asyncio.sleep(SETTLE_S)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await _send(response, {"attached": {"target": target.to_dict(), "proxies": nodes,
                                            "meshVersion": version, "synced": synced}})
        await _relay(response, session)
        return response
    finally:
        cp.taps.close(session)
        if not cp.shutting_down:
            cp.changed()  # remove the loggers no session needs any more


async def _relay(response: web.StreamResponse, session: TapSession) -> None:
    while True:
        try:
            event = await asyncio.wait_for(session.next(), HEARTBEAT_S)
        except TimeoutError:
            await _send(response, {"heartbeat": round(time.time(), 3),
                                   "dropped": session.dropped})
            continue
        await _send(response, {"request": event})
        if session.full and not session.pending():
            await _send(response, {"end": {"reason": "max", "lines": session.matched,
                                           "dropped": session.dropped}})
            return


async def _send(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(json.dumps(message).encode() + b"\n")
