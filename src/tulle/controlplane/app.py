"""The control plane process: wires the store, registry, snapshot builder, xDS server and API.

Config path: a change (apply, delete, registration, readiness) marks the mesh dirty; after a
short debounce one new frozen MeshSnapshot is built and offered to every connected proxy, whose
stream sends only what changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time
from types import MappingProxyType
from typing import Any

from aiohttp import web

from tulle import __version__
from tulle.controlplane.identity import IdentityService
from tulle.controlplane.resources import ResourceService
from tulle.controlplane.rotation import Rotator
from tulle.controlplane.sessions import END_SESSION
from tulle.controlplane.tap import PRECHECK_LOGGING, TapReceiver, proxy_logging
from tulle.controlplane.telemetry import TelemetryService
from tulle.errors import ApiError
from tulle.identity.ca import CertificateAuthority
from tulle.identity.tokens import DEFAULT_TTL_S as DEFAULT_JOIN_TOKEN_TTL_S
from tulle.identity.tokens import JoinTokens
from tulle.model.mesh import EMPTY_MESH, MeshIdentity, MeshSnapshot, build_mesh
from tulle.model.resource import Resource
from tulle.registry.registry import DEFAULT_GRACE_S, WorkloadRegistry
from tulle.settings import ControlPlaneEndpoint, StatePaths
from tulle.store.sqlite import SqliteStore
from tulle.tap.hub import TapHub
from tulle.xds.compiler import ConfigCompiler, ProxyConfig
from tulle.xds.proxy import ProxyInfo
from tulle.xds.server import XdsHub, build_server
from tulle.xds.tracker import DEFAULT_STALE_AFTER_S

log = logging.getLogger("tulle.controlplane")

DEFAULT_DEBOUNCE_S = 0.1
CERTIFICATE_BATCH_S = 0.005  # certificates go out fast (no debounce), in small batches


class ControlPlane:
    def __init__(self, paths: StatePaths, endpoint: ControlPlaneEndpoint, token: str, *,
                 debounce_s: float = DEFAULT_DEBOUNCE_S, grace_s: float = DEFAULT_GRACE_S,
                 join_token_ttl_s: float = DEFAULT_JOIN_TOKEN_TTL_S,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S) -> None:
        self.paths = paths
        self.endpoint = endpoint
        self.token = token
        self.debounce_s = debounce_s
        self.store = SqliteStore(paths.database)
        # A removed workload's proxy loses its stream too: it keeps its last config, but gets
        # nothing more until it registers again.
        self.registry = WorkloadRegistry(self.store, self.changed, grace_s=grace_s,
                                         on_removed=self._on_removed)
        self.resources = ResourceService(self.store, self.registry.workloads, self.changed,
                                         precheck=self.precheck)
        self.compiler = ConfigCompiler()
        self._precheck_compiler = ConfigCompiler()
        self._precheck_versions = itertools.count(-1, -1)
        self.hub = XdsHub(directory=self.registry, source=self, stale_after_s=stale_after_s)
        self.telemetry = TelemetryService(self)
        self.ca = CertificateAuthority.open(paths.ca_dir, endpoint.trust_domain)
        self.identity = IdentityService(self, self.ca, JoinTokens(join_token_ttl_s))
        self.rotator = Rotator(self, self.ca)
        # Control messages for connected agents (renew now, new trust bundle), by node id.
        self.agent_channels: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.mesh: MeshSnapshot = EMPTY_MESH
        # Tap sessions: ephemeral, never stored. Each rebuild plans their loggers.
        self.taps = TapHub(lambda: self.mesh)
        self.started_at = time.time()
        self.shutting_down = False
        self._versions = itertools.count(1)
        self._rebuild: asyncio.TimerHandle | None = None
        self._batch: asyncio.Future[int] | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._api: web.AppRunner | None = None
        self._identity_api: web.AppRunner | None = None
        self._xds: Any = None

    # -- the config path ---------------------------------------------------------------------

    def changed(self) -> None:
        """Something the mesh is built from changed: rebuild soon, once for a burst."""
        if self._rebuild is None:
            loop = asyncio.get_running_loop()
            self._rebuild = loop.call_later(self.debounce_s, self.rebuild_now)

    async def rebuild_shortly(self, delay_s: float = CERTIFICATE_BATCH_S) -> int:
        """Rebuild within ``delay_s``, sharing one rebuild among every caller in that window
        (say, many agents renewing at once during a rotation). Returns the mesh version."""
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = loop.create_future()
            loop.call_later(delay_s, self._rebuild_batch)
        return await asyncio.shield(self._batch)

    def _rebuild_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None or batch.done():
            return
        try:
            batch.set_result(self.rebuild_now())
        except Exception as exc:  # every waiter sees the failure instead of hanging
            batch.set_exception(exc)

    @property
    def rebuild_pending(self) -> bool:
        return self._rebuild is not None

    def rebuild_now(self) -> int:
        if self._rebuild is not None:
            self._rebuild.cancel()
            self._rebuild = None
        self.mesh = build_mesh(next(self._versions), self.resources.resources(),
                               self.registry.workloads(), self._identity())
        self.taps.replan(self.mesh)
        self.hub.push_all()
        return self.mesh.version

    def precheck(self, resources: list[Resource]) -> None:
        """Translate a proposed set of resources for every connected proxy before it is
        stored, so that a bug in tulle's translation rejects the apply instead of breaking
        pushes. A separate compiler keeps the live one's cache intact; its own cache makes
        this incremental."""
        mesh = build_mesh(next(self._precheck_versions), resources, self.registry.workloads(),
                          self._identity())
        # One proxy per service covers every kind of per-proxy config (its inbound side)...
        proxies = list({w.service_ref: ProxyInfo.of(w)
                        for w in self.registry.workloads()}.values())
        # ...and a client per namespace every shared part, even where no proxy runs yet.
        for namespace in sorted({r.meta.namespace or "default" for r in resources}):
            proxies.append(ProxyInfo(f"precheck.{namespace}", namespace, "precheck",
                                     "127.0.0.1", None, None, 1, ()))
        try:
            for proxy in proxies:
                self._precheck_compiler.compile(mesh, proxy, PRECHECK_LOGGING)
        except Exception as exc:
            log.exception("translation failed during an apply")
            raise ApiError(f"tulle could not translate this configuration for Envoy: "
                           f"{type(exc).__name__}: {exc}. Nothing was applied",
                           hint="this is a bug in tulle; please report it with "
                                "`tulle bug-report`") from exc

    def _on_removed(self, node_id: str) -> None:
        self.hub.disconnect(node_id)
        self.telemetry.forget(node_id)

    def _identity(self) -> MeshIdentity:
        return MeshIdentity(self.ca.trust_domain, self.ca.bundle_pem(),
                            MappingProxyType(self.registry.certificates()))

    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        return self.compiler.compile(self.mesh, proxy, proxy_logging(self, proxy))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from tulle.controlplane.api import make_api, make_identity_api

        resources = self.resources.load()
        restored = self.registry.restore()
        self.rebuild_now()
        host = self.endpoint.host
        # A port of 0 lets the kernel choose: self.endpoint takes each port as it is bound,
        # since sessions hand it to agents (xDS, identity) and status reports it.
        self._xds, xds_port = build_server(self.hub, f"{host}:{self.endpoint.xds_port}",
                                           access_logs=TapReceiver(self))
        self.endpoint = dataclasses.replace(self.endpoint, xds_port=xds_port)
        await self._xds.start()
        self._identity_api = web.AppRunner(make_identity_api(self), access_log=None)
        await self._identity_api.setup()
        await web.TCPSite(self._identity_api, host, self.endpoint.identity_port,
                          ssl_context=self.identity.refresh_server_identity()).start()
        self.endpoint = dataclasses.replace(
            self.endpoint, identity_port=int(self._identity_api.addresses[0][1]))
        # The API last, and the record right after it with no await between: nobody can be
        # answered (nor find the API) before the record holds every port actually bound.
        self._api = web.AppRunner(make_api(self), handler_cancellation=True, access_log=None,
                                  shutdown_timeout=2.0)
        await self._api.setup()
        await web.TCPSite(self._api, host, self.endpoint.api_port).start()
        self.endpoint = dataclasses.replace(self.endpoint,
                                            api_port=int(self._api.addresses[0][1]))
        self.endpoint.save(self.paths)
        self._tasks.append(asyncio.create_task(self._expire_orphans()))
        self._tasks.append(asyncio.create_task(self.identity.keep_server_identity()))
        for warning in self.identity.expiry_warnings():
            log.warning("%s", warning)
        self.rotator.resume_in_background()
        log.info("tulle %s control plane (pid %d) ready: API %s, xDS %s:%d; %d resources, "
                 "%d workloads restored", __version__, os.getpid(), self.endpoint.api_url, host,
                 self.endpoint.xds_port, resources, restored)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        # Sessions end because *we* stop, not because agents died: keep their registrations.
        self.shutting_down = True
        for task in self._tasks:
            task.cancel()
        for channel in self.agent_channels.values():
            channel.put_nowait(END_SESSION)
        if self._api is not None:
            await self._api.cleanup()
        if self._identity_api is not None:
            await self._identity_api.cleanup()
        if self._xds is not None:
            await self._xds.stop(grace=0.5)
        self.store.close()
        log.info("control plane stopped")

    async def _expire_orphans(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.registry.expire_orphans()
            except Exception:
                log.exception("expiring orphaned workloads failed")

    def status(self) -> dict[str, Any]:
        workloads = self.registry.workloads()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "uptimeSeconds": round(time.time() - self.started_at, 1),
            "stateDir": str(self.paths.root),
            "apiUrl": self.endpoint.api_url,
            "xdsAddress": f"{self.endpoint.host}:{self.endpoint.xds_port}",
            "storeRevision": self.store.revision(),
            "meshVersion": self.mesh.version,
            "services": len(self.mesh.services),
            "workloads": len(workloads),
            "proxiesConnected": len(self.hub.connected()),
            "nacksTotal": self.hub.nacks.total,
            "identityAddress": f"{self.endpoint.host}:{self.endpoint.identity_port}",
            "trustDomain": self.ca.trust_domain,
            "warnings": self.identity.expiry_warnings(),
        }
