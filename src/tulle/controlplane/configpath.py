"""The config path: from the mesh's inputs to a frozen snapshot offered to every proxy.

A change (apply, delete, registration, readiness, a new certificate) marks the mesh dirty; after
a short debounce one new frozen :class:`MeshSnapshot` is built and published, and every
connected proxy's stream sends only what changed. Services see this module as three callables:
``changed()`` (debounced), ``push()`` (now, returns the mesh version) and ``push_soon()`` (one
shared rebuild for a burst of callers, awaited).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tulle.errors import ApiError
from tulle.model.mesh import EMPTY_MESH, MeshIdentity, MeshSnapshot, build_mesh
from tulle.model.resource import Resource
from tulle.model.workload import Workload
from tulle.xds.compiler import ConfigCompiler, proxy_shape
from tulle.xds.config import ProxyConfig
from tulle.xds.proxy import ProxyInfo, ProxyLogging

log = logging.getLogger("tulle.controlplane")

DEFAULT_DEBOUNCE_S = 0.1
CERTIFICATE_BATCH_S = 0.005  # certificates go out fast (no debounce), in small batches


@dataclass(frozen=True)
class MeshInputs:
    """What a snapshot is built from, read at each rebuild."""

    resources: Callable[[], Iterable[Resource]]
    workloads: Callable[[], Iterable[Workload]]
    identity: Callable[[], MeshIdentity]


class ConfigPath:
    """Owns the current snapshot; ``publish`` hands each new one to its readers (the tap plan,
    the xDS hub)."""

    def __init__(self, inputs: MeshInputs, publish: Callable[[MeshSnapshot], None], *,
                 debounce_s: float = DEFAULT_DEBOUNCE_S) -> None:
        self._inputs = inputs
        self._publish = publish
        self._debounce_s = debounce_s
        self._versions = itertools.count(1)
        self._rebuild: asyncio.TimerHandle | None = None
        self._batch: asyncio.Future[int] | None = None
        self._settled: asyncio.Future[None] | None = None  # resolved by the next push
        self._closed = False
        self.mesh: MeshSnapshot = EMPTY_MESH

    def current(self) -> MeshSnapshot:
        return self.mesh

    @property
    def pending(self) -> bool:
        """A change is waiting for its debounced rebuild."""
        return self._rebuild is not None

    def changed(self) -> None:
        """Something the mesh is built from changed: rebuild soon, once for a burst."""
        if self._rebuild is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._rebuild = loop.call_later(self._debounce_s, self.push)

    def push(self) -> int:
        """Build a snapshot now and publish it; returns its version."""
        if self._rebuild is not None:
            self._rebuild.cancel()
            self._rebuild = None
        self.mesh = build_mesh(next(self._versions), self._inputs.resources(),
                               self._inputs.workloads(), self._inputs.identity())
        self._publish(self.mesh)
        self._wake_settled()
        return self.mesh.version

    async def push_soon(self, delay_s: float = CERTIFICATE_BATCH_S) -> int:
        """Rebuild within ``delay_s``, sharing one rebuild among every caller in that window
        (say, many agents renewing at once during a rotation). Returns the mesh version."""
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = loop.create_future()
            loop.call_later(delay_s, self._push_batch)
        return await asyncio.shield(self._batch)

    async def settled(self) -> MeshSnapshot:
        """The snapshot once a pending debounced change is in it: waits for the rebuild
        that is due anyway, never forces one."""
        if self._rebuild is not None:
            if self._settled is None:
                self._settled = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._settled)
        return self.mesh

    def close(self) -> None:
        """The control plane is stopping: no more rebuilds."""
        self._closed = True
        if self._rebuild is not None:
            self._rebuild.cancel()
            self._rebuild = None
        self._wake_settled()

    def _wake_settled(self) -> None:
        settled, self._settled = self._settled, None
        if settled is not None and not settled.done():
            settled.set_result(None)

    def _push_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None or batch.done():
            return
        try:
            batch.set_result(self.push())
        except Exception as exc:  # every waiter sees the failure instead of hanging
            batch.set_exception(exc)


class ProxyConfigs:
    """The xDS hub's config source: the current snapshot compiled for one proxy."""

    def __init__(self, mesh: Callable[[], MeshSnapshot],
                 logging_of: Callable[[ProxyInfo], ProxyLogging]) -> None:
        self._mesh = mesh
        self._logging_of = logging_of
        self._compiler = ConfigCompiler()

    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        return self._compiler.compile(self._mesh(), proxy, self._logging_of(proxy))


class Precheck:
    """Translate a proposed set of resources before it is stored, so that a bug in tulle's
    translation rejects the apply instead of breaking pushes.

    It compiles for one registered proxy per shape (``proxy_shape``: its service's protocol,
    mTLS mode, rate limit, access log, its upstream bindings; not one per service, which cost
    1,000 compiles at 1,000 services) and for a client per namespace the resources touch (every
    shared part, even where no proxy runs yet). A compiler of its own keeps the live one's
    cache intact; its cache makes this incremental."""

    def __init__(self, workloads: Callable[[], Iterable[Workload]],
                 identity: Callable[[], MeshIdentity], logging: ProxyLogging) -> None:
        self._workloads = workloads
        self._identity = identity
        self._logging = logging  # every logger a proxy can get, so all are translated
        self._compiler = ConfigCompiler()
        self._versions = itertools.count(-1, -1)

    def __call__(self, resources: Sequence[Resource]) -> None:
        workloads = list(self._workloads())
        mesh = build_mesh(next(self._versions), resources, workloads, self._identity())
        by_shape: dict[tuple[object, ...], ProxyInfo] = {}
        for workload in workloads:
            proxy = ProxyInfo.of(workload)
            by_shape.setdefault(proxy_shape(mesh, proxy), proxy)
        proxies = list(by_shape.values())
        for namespace in sorted({r.meta.namespace or "default" for r in resources}):
            proxies.append(ProxyInfo(f"precheck.{namespace}", namespace, "precheck",
                                     "127.0.0.1", None, None, 1, ()))
        try:
            for proxy in proxies:
                self._compiler.compile(mesh, proxy, self._logging)
        except Exception as exc:
            log.exception("translation failed during an apply")
            raise ApiError(f"tulle could not translate this configuration for Envoy: "
                           f"{type(exc).__name__}: {exc}. Nothing was applied",
                           hint="this is a bug in tulle; please report it with "
                                "`tulle bug-report`") from exc
