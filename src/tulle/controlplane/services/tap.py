"""Live request tap: attaching a session, and what the config path needs from tap.

A session adds access loggers to the tapped proxies on the next push; it is attached once every
tapped proxy has ACKed them and connections accepted before have drained. Its loggers are
removed on the push after it closes. Sessions are ephemeral: never stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.controlplane.services import PushSoon, WaitSynced
from tulle.model.mesh import MeshSnapshot
from tulle.model.taps import ProxyTaps
from tulle.registry.registry import Credentials
from tulle.security import tokens_match
from tulle.settings import SIDECAR_DRAIN_TIME_S
from tulle.tap.filters import TapFilter
from tulle.tap.hub import TapHub, TapSession
from tulle.tap.targets import TapTarget, resolve_target, tapped_nodes
from tulle.xds.als import access_log_token
from tulle.xds.generators.access_logs import LOG_TAG, REFUSED_EGRESS, ROUTE_TRIAL
from tulle.xds.proxy import ProxyInfo, ProxyLogging

ATTACH_TIMEOUT_S = 10.0
# A connection keeps the listener config it was accepted with until the sidecar's drain time
# closes it: only after that does every request pass the new logger.
SETTLE_S = SIDECAR_DRAIN_TIME_S + 0.2
ACCESS_LOG_FILE = "access.log"
MAX_HOST_CHARS = 255  # a refused call's host, as counted (an application chooses it)

# Every logger a proxy can get, so that an apply's precheck translates them all.
PRECHECK_LOGGING = ProxyLogging(ProxyTaps(inbound=True, outbound=True), "precheck",
                                "/precheck/" + ACCESS_LOG_FILE)



@dataclass(frozen=True)
class Attachment:
    session: TapSession
    target: TapTarget
    proxies: tuple[str, ...]
    mesh_version: int
    synced: bool  # every tapped proxy ACKed its logger in time


class ProxyLoggingSource:
    """A proxy's taps (from the plan of the current snapshot) and access-log path."""

    def __init__(self, taps: TapHub, credentials: Callable[[str], Credentials | None],
                 workloads_dir: Path) -> None:
        self._taps = taps
        self._credentials = credentials
        self._workloads_dir = workloads_dir

    def __call__(self, proxy: ProxyInfo) -> ProxyLogging:
        taps = self._taps.taps_of(proxy.node_id)
        # Always: the outbound listener logs calls refused under REGISTRY_ONLY.
        credentials = self._credentials(proxy.node_id)
        token = access_log_token(credentials.xds_token, proxy.node_id) if credentials else ""
        # Universal mode runs every workload on this host, in its directory under the state
        # directory.
        path = self._workloads_dir / proxy.node_id / ACCESS_LOG_FILE
        return ProxyLogging(taps, token, str(path))


class TapReceiver:
    """The access-log service's view: who may stream, and where entries go."""

    def __init__(self, taps: TapHub, credentials: Callable[[str], Credentials | None],
                 refusals: Callable[[str, Mapping[str, int]], None] | None = None,
                 trials: Callable[[str, Sequence[accesslog_pb2.HTTPAccessLogEntry]], None]
                 | None = None) -> None:
        """``refusals``: where the calls refused under REGISTRY_ONLY go, counted by host;
        ``trials``: where requests to services with a DryRun HTTPRoute go."""
        self._taps = taps
        self._credentials = credentials
        self._refusals = refusals
        self._trials = trials

    def authenticate_access_log(self, node_id: str, token: str) -> bool:
        credentials = self._credentials(node_id)
        return credentials is not None and tokens_match(
            access_log_token(credentials.xds_token, node_id), token)

    def receive(self, node_id: str, entries: Sequence[accesslog_pb2.HTTPAccessLogEntry]
                ) -> None:
        tapped = []
        refused: dict[str, int] = {}
        tried = []
        for entry in entries:
            tag = entry.common_properties.custom_tags.get(LOG_TAG)
            if tag == REFUSED_EGRESS:
                host = entry.request.authority[:MAX_HOST_CHARS] or "(no host)"
                refused[host] = refused.get(host, 0) + 1
            elif tag == ROUTE_TRIAL:
                tried.append(entry)
            else:
                tapped.append(entry)
        if tapped:
            self._taps.receive(node_id, tapped)
        if refused and self._refusals is not None:
            self._refusals(node_id, refused)
        if tried and self._trials is not None:
            self._trials(node_id, tried)


class TapService:
    def __init__(self, taps: TapHub, mesh: Callable[[], Awaitable[MeshSnapshot]],
                 push_soon: PushSoon, changed: Callable[[], None],
                 wait_synced: WaitSynced, settle_s: float = SETTLE_S) -> None:
        self._taps = taps
        self._mesh = mesh  # the current snapshot, once a pending registration is in it
        self._push_soon = push_soon
        self._changed = changed
        self._wait_synced = wait_synced
        self._settle_s = settle_s

    async def attach(self, target_text: str, namespace: str, tap_filter: TapFilter
                     ) -> Attachment:
        """Open a session and wait until its loggers are in place. The caller must
        :meth:`detach` it, whatever happens."""
        # A workload that registered a moment ago is in the next snapshot: wait for it.
        mesh = await self._mesh()
        target = resolve_target(mesh, target_text, namespace)
        session = self._taps.open(target, tap_filter)
        try:
            version = await self._push_soon()
            nodes = tapped_nodes(target, await self._mesh())
            synced = await self._wait_synced(version, ATTACH_TIMEOUT_S, nodes)
            await asyncio.sleep(self._settle_s)  # connections accepted before drain away
        except BaseException:
            self.detach(session)
            raise
        return Attachment(session, target, tuple(nodes), version, synced)

    def detach(self, session: TapSession) -> None:
        self._taps.close(session)
        self._changed()  # remove the loggers no session needs any more

    def status(self) -> dict[str, object]:
        return self._taps.status()

