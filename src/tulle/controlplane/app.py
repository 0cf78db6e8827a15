"""The control plane process: builds the store, registry, CA, config path and domain services,
wires each with exactly the collaborators it uses, and runs the xDS server and the two HTTP
applications. Nothing here is business logic: that lives in the services and in ``configpath``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web
from envoy.data.accesslog.v3.accesslog_pb2 import HTTPAccessLogEntry

from tulle import __version__
from tulle.controlplane import storage
from tulle.controlplane.agents import AgentClient
from tulle.controlplane.api.guard import start_app
from tulle.controlplane.api.server import Services, make_api, make_identity_api
from tulle.controlplane.configpath import (
    DEFAULT_DEBOUNCE_S,
    ConfigPath,
    MeshInputs,
    Precheck,
    ProxyConfigs,
)
from tulle.controlplane.metrics import MetricSources, controlplane_metrics
from tulle.controlplane.peerchannel import PeerChannel
from tulle.controlplane.replicaset import ReplicaSet
from tulle.controlplane.services.analysis import AnalysisService
from tulle.controlplane.services.diagnosis import DiagnosisService
from tulle.controlplane.services.health import HealthService
from tulle.controlplane.services.history import HistoryService
from tulle.controlplane.services.hosts import HostSurvey
from tulle.controlplane.services.identity import IdentityService, keep_revocation_lists
from tulle.controlplane.services.joins import JoinService
from tulle.controlplane.services.mesh import MeshViews
from tulle.controlplane.services.proxies import ProxyService
from tulle.controlplane.services.resources import ResourceService
from tulle.controlplane.services.rollouts import ROLLOUTS, RolloutService
from tulle.controlplane.services.rotation import Rotator
from tulle.controlplane.services.sessions import AgentChannels, SessionService
from tulle.controlplane.services.tap import (
    PRECHECK_LOGGING,
    ProxyLoggingSource,
    TapReceiver,
    TapService,
)
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.controlplane.services.trials import TrialCounter, mark_trial
from tulle.controlplane.singletons import (
    COMPACTION,
    DEFAULT_COMPACT_EVERY_S,
    DEFAULT_HISTORY_KEEP,
    Singleton,
    compaction_job,
)
from tulle.errors import TulleError
from tulle.identity.ca import CertificateAuthority
from tulle.identity.cafiles import CaFiles
from tulle.identity.hostjoin import JoinGrants
from tulle.identity.spiffe import control_plane_dns, control_plane_id
from tulle.identity.tokens import DEFAULT_TTL_S as DEFAULT_JOIN_TOKEN_TTL_S
from tulle.identity.tokens import JoinTokens
from tulle.local import tail_bytes
from tulle.model.mesh import MeshIdentity, MeshSnapshot
from tulle.model.workload import Workload
from tulle.registry.registry import DEFAULT_GRACE_S, WorkloadRegistry
from tulle.settings import ControlPlaneEndpoint, StatePaths, read_metrics_token
from tulle.store.base import Store
from tulle.store.etcd import EtcdStore
from tulle.store.sqlite import SqliteStore
from tulle.tap.hub import TapHub
from tulle.xds.bootstrap import XdsTls, sidecar_bootstrap
from tulle.xds.hub import ProxyHub
from tulle.xds.server import XdsHub, build_server
from tulle.xds.sync import DEFAULT_STALE_AFTER_S
from tulle.xds.workers.pool import WorkerPool

log = logging.getLogger("tulle.controlplane")
SETTLE_TIMEOUT_S = 10.0  # a rollout's wait for every proxy to take its subsets


def _write_now(write: Callable[[], None]) -> None:
    write()


class ControlPlane:
    def __init__(self, paths: StatePaths, endpoint: ControlPlaneEndpoint, token: str, *,
                 debounce_s: float = DEFAULT_DEBOUNCE_S, grace_s: float = DEFAULT_GRACE_S,
                 join_token_ttl_s: float = DEFAULT_JOIN_TOKEN_TTL_S,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 store: Store | None = None, ca_files: CaFiles | None = None,
                 xds_workers: int = 0, history_keep: int = DEFAULT_HISTORY_KEEP,
                 compact_every_s: float = DEFAULT_COMPACT_EVERY_S) -> None:
        """``xds_workers``: how many worker processes serve the ADS streams; 0 serves them on
        this process's event loop. ``history_keep`` and ``compact_every_s``: the
        compaction (see singletons.py)."""
        self.paths = paths
        self.endpoint = endpoint
        self.token = token
        self.started_at = time.time()
        self.store: Store = store if store is not None else SqliteStore(paths.database)
        # On a shared store: the other replicas, their workloads, resources and telemetry.
        # Replicas call each other on their identity ports, with the control plane's own
        # certificate (made once the CA is open, below).
        channel = PeerChannel(tls=lambda: self.identity.peer_context(),  # noqa: PLW0108
                              server_name=lambda: control_plane_dns(self.ca.trust_domain))
        self.replicas = (ReplicaSet(self.store, channel, self._endpoint_record, self._changed)
                         if isinstance(self.store, EtcdStore) else None)
        # Singleton work: done here with SQLite; on etcd, by the replica elected for it.
        self.singletons = [Singleton(
            COMPACTION, compaction_job(self.store, history_keep, compact_every_s),
            self.store if isinstance(self.store, EtcdStore) else None)]
        # The CA in the state directory's ca/, or sealed in a store replicas share.
        self.ca = CertificateAuthority.open(ca_files or paths.ca_dir, endpoint.trust_domain)
        # The bundle and issuer this replica's agents were last told of.
        self._ca_told = (self.ca.bundle_pem(), self.ca.state.issuer)
        # A removed workload's proxy loses its stream too: it keeps its last config, but gets
        # nothing more until it registers again.
        self.registry = WorkloadRegistry(
            self.store, self._changed, grace_s=grace_s, on_removed=self._on_removed,
            write=self.replicas.writes if self.replicas else _write_now)
        self.resources = ResourceService(
            self.store, self._all_workloads, self._changed,
            precheck=Precheck(self.registry.workloads, self._identity, PRECHECK_LOGGING),
            remote_io=self.replicas is not None)
        # Tap sessions: ephemeral, never stored. Each snapshot gets its plan of loggers.
        self.taps = TapHub(self._mesh, mark_trial)
        self._trials = TrialCounter()
        self.config = ConfigPath(
            MeshInputs(self.resources.resources, self._all_workloads, self._identity),
            self._publish, debounce_s=debounce_s)
        self.configs = ProxyConfigs(self._mesh, ProxyLoggingSource(
            self.taps, self.registry.credentials, paths.workloads_dir))
        # Over TLS (agents on other hosts), a stream must also come from the node's own
        # certificate: its credential alone is not enough.
        self.hub: ProxyHub
        self.workers: WorkerPool | None = None
        peer_check = self._xds_peer if self.endpoint.xds_tls else None
        if xds_workers > 0:
            self.hub = self.workers = WorkerPool(
                self.registry, self.configs, xds_workers, stale_after_s=stale_after_s,
                peer_check=peer_check,
                access_logs=TapReceiver(self.taps, self.registry.credentials,
                                        self._refused, self._tried),
                tls=self.identity_key_pair if self.endpoint.xds_tls else None,
                client_roots=lambda: self.ca.bundle_pem().encode())
        else:
            self.hub = XdsHub(directory=self.registry, source=self.configs,
                              stale_after_s=stale_after_s, peer_check=peer_check)
        self.telemetry = TelemetryService(self.registry.get, self._all_workloads,
                                          self._mesh, self.ca.trust_domain)
        if self.replicas is not None:
            self.telemetry.peers = self.replicas.ask_peers
        self.rollouts = RolloutService(self.resources, self.telemetry, self._all_workloads,
                                       self._settle)
        self.singletons.append(Singleton(
            ROLLOUTS, self.rollouts.job,
            self.store if isinstance(self.store, EtcdStore) else None))
        self.identity = IdentityService(
            self.ca, JoinTokens(join_token_ttl_s), self.registry,
            push_soon=self.config.push_soon, wait_synced=self.hub.wait_synced,
            proxy_connected=self.hub.is_connected,
            workload_lifetime_s=lambda: self._mesh().settings.workload_lifetime_s,
            ca_dir=paths.ca_dir, identity_port=lambda: self.endpoint.identity_port,
            key_dir=lambda workload: Path(workload.key_dir) if workload.key_dir
            else paths.identity_dir(workload.namespace, workload.name),
            held_elsewhere=lambda node_id: self.replicas.holder_of(node_id)
            if self.replicas is not None else None,
            certificates_elsewhere=self.replicas.remote.certificates_of
            if self.replicas is not None else lambda node_id: ())
        self.joins = JoinService(
            JoinGrants(storage.join_files(paths, self.store)), self.ca,
            lambda: f"https://{_host_port(self.endpoint.agent_host, self.endpoint.identity_port)}")
        self.channels = AgentChannels()
        self.rotator = Rotator(
            self.ca, self.registry, push=self.config.push, wait_synced=self.hub.wait_synced,
            connected=self.hub.connected, broadcast=self._tell_agents,
            refresh_server_identity=self.identity.refresh_server_identity,
            shared=ca_files is not None,
            peers=self.replicas.rotation if self.replicas is not None else None)
        self.sessions = SessionService(
            self.registry, self.channels, enrol=self.identity.enrol,
            admit=self.identity.admit, vouch=self.identity.session_certificate,
            adopt=self.identity.adopt,
            bootstrap=lambda workload, xds_token: sidecar_bootstrap(
                workload, self.endpoint.agent_host, self.endpoint.xds_port, xds_token,
                other_xds=self.replicas.other_xds() if self.replicas else (),
                tls=XdsTls(control_plane_id(self.ca.trust_domain))
                if self.endpoint.xds_tls else None),
            push=self.config.push, wait_synced=self.hub.wait_synced,
            connected=self.hub.connected,
            control_planes=self.replicas.control_planes if self.replicas else list,
            mesh=self._mesh)
        agents = AgentClient(self.registry.get, self.registry.credentials,
                             remote_tls=self.identity.client_context)
        history = HistoryService(self.store, self.resources, remote_io=self.replicas is not None)
        self.services = Services(
            resources=self.resources,
            history=history,
            analysis=AnalysisService(self.resources.resources, self.registry.workloads,
                                     self.telemetry.window, lambda: dict(self.telemetry.nodes)),
            views=MeshViews(self._mesh, self.registry, self.hub.connected, self._push_pending,
                            self.hub.wait_synced,
                            remote=self.replicas.remote.by_replica if self.replicas
                            else list),
            proxies=ProxyService(agents, self.hub.proxy_of, self.hub.connected,
                                 self.configs.config_for),
            hub=self.hub,
            sessions=self.sessions,
            identity=self.identity,
            joins=self.joins,
            rotator=self.rotator,
            telemetry=self.telemetry,
            taps=TapService(self.taps, self.config.settled, self.config.push_soon,
                            self._changed, self.hub.wait_synced),
            diagnosis=DiagnosisService(self._mesh, self.telemetry, self.hub.sync_views,
                                       self.hub.nacks.entries, self.hub.stream_events.entries,
                                       self.identity.status,
                                       lambda limit: history.changes_async(None, limit),
                                       agents),
            rollouts=self.rollouts,
            health=HealthService(self.store, paths.database, self.ca,
                                 replicas=self._replica_health if self.replicas else None,
                                 hosts=HostSurvey(self.registry.workloads, agents,
                                                  self.telemetry.windows.report_age).survey),
            status=self.status,
            metrics=lambda: controlplane_metrics(self.metric_sources()),
            shutdown=self.request_stop,
            log_tail=lambda limit: tail_bytes(paths.log_file, limit),
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._api: web.AppRunner | None = None
        self._identity_api: web.AppRunner | None = None
        self._xds: Any = None

    # -- the config path ---------------------------------------------------------------------

    @property
    def mesh(self) -> MeshSnapshot:
        return self.config.mesh

    def _mesh(self) -> MeshSnapshot:
        return self.config.mesh

    def _changed(self) -> None:
        self.config.changed()

    async def _settle(self) -> bool:
        """Push now, and wait until every connected proxy ACKed it."""
        version = await self.config.push_soon()
        return await self.hub.wait_synced(version, SETTLE_TIMEOUT_S)

    def _ca_changed(self) -> None:
        """The CA's files changed in the shared store: follow another replica's revocation or
        rotation step (our own writes find nothing new). New roots are trusted on the
        identity port at once; proxies get the new bundle and lists with the next push."""
        try:
            changed = self.ca.reload()
        except TulleError as exc:
            log.warning("cannot follow the CA's state in the shared store: %s", exc.message)
            return
        told_issuer = self._ca_told[1]
        # Compared with what the agents were told, not with the state before this reload: a
        # write here that met another replica's rotation stage took that state in already.
        now = (self.ca.bundle_pem(), self.ca.state.issuer)
        if not changed and now == self._ca_told:
            return
        log.info("the CA's state changed on another replica: following it")
        if now != self._ca_told:
            # A rotation's stage: the agents here take the new bundle, and renew from the
            # new issuer when it changed.
            self.identity.refresh_server_identity()
            self._tell_agents({"bundle": self.ca.bundle_pem()})
            if self.ca.state.issuer != told_issuer:
                self._tell_agents({"renew": True})
        self._changed()

    def _tell_agents(self, message: dict[str, Any]) -> None:
        """A new bundle, or "renew now", to every agent of this replica."""
        self._ca_told = (self.ca.bundle_pem(), self.ca.state.issuer)
        self.channels.broadcast(message)

    def _endpoint_record(self) -> dict[str, Any]:
        return {"host": self.endpoint.host, "agentHost": self.endpoint.agent_host,
                "apiPort": self.endpoint.api_port,
                "xdsPort": self.endpoint.xds_port, "identityPort": self.endpoint.identity_port}

    def _store_revision(self) -> int:
        """The store's revision: read now from SQLite; on etcd, as last read (at most a few
        seconds old), so that status and /metrics answer while etcd does not."""
        return self.replicas.revision() if self.replicas else self.store.revision()

    def _all_workloads(self) -> list[Workload]:
        """This replica's workloads, and on a shared store those of the other replicas (a
        workload that moved here counts as this replica's)."""
        local = self.registry.workloads()
        return self.replicas.workloads(local) if self.replicas else local

    def _push_pending(self) -> None:
        if self.config.pending:
            self.config.push()

    def _publish(self, mesh: MeshSnapshot) -> None:
        self.taps.replan(mesh)
        self.hub.push_all()
        self.sessions.published(mesh)

    def _identity(self) -> MeshIdentity:
        return MeshIdentity(self.ca.trust_domain, self.ca.bundle_pem(),
                            MappingProxyType(self.registry.certificates()),
                            self.ca.crl_pem(), self.ca.revocation_mark())

    def _on_removed(self, node_id: str) -> None:
        self.hub.disconnect(node_id)
        self.telemetry.forget(node_id)

    async def _replica_health(self) -> dict[str, Any]:
        assert self.replicas is not None
        return await self.replicas.health(w.node_id for w in self.registry.workloads())

    def metric_sources(self) -> MetricSources:
        return MetricSources(
            started_at=self.started_at, mesh=self._mesh, store_revision=self._store_revision,
            resources=self.resources.resources, workloads=self.registry.workloads,
            hub=self.hub, certificates_issued=lambda: self.identity.issued_total, ca=self.ca,
            windows=self.telemetry.windows)

    # -- lifecycle ---------------------------------------------------------------------------

    def identity_key_pair(self) -> tuple[bytes, bytes]:
        return self.identity.server_key_pair()

    def _refused(self, node_id: str, hosts: Mapping[str, int]) -> None:
        """Calls a sidecar refused under REGISTRY_ONLY, from its access log."""
        self.telemetry.record_refusals(node_id, hosts)

    def _tried(self, node_id: str, entries: Sequence[HTTPAccessLogEntry]) -> None:
        """Requests to services with a DryRun HTTPRoute, from a caller's access log."""
        self.telemetry.record_trials(node_id, self._trials.count(self._mesh(), node_id,
                                                                 entries))

    def _xds_peer(self, node_id: str, certificate_pem: bytes | None) -> str | None:
        return self.identity.xds_peer(node_id, certificate_pem)

    async def start(self) -> None:
        # On a shared store, the watch starts from the revision read before the load: a
        # write another replica makes in between is seen twice, never missed.
        watch_from = (await asyncio.to_thread(self.store.etcd_revision)
                      if isinstance(self.store, EtcdStore) else None)
        resources = self.resources.load()
        restored = self.registry.restore()
        if self.replicas is not None:
            await self.replicas.restore(self.registry.persist_all)
        self.config.push()
        host, agent_host = self.endpoint.host, self.endpoint.agent_host
        server_tls = self.identity.refresh_server_identity()
        # A port of 0 lets the kernel choose: self.endpoint takes each port as it is bound,
        # since sessions hand it to agents (xDS, identity) and status reports it.
        xds_address = _host_port(agent_host, self.endpoint.xds_port)
        if self.workers is not None:
            xds_port = await self.workers.start(xds_address)
        else:
            assert isinstance(self.hub, XdsHub)
            self._xds, xds_port = build_server(
                self.hub, xds_address,
                access_logs=TapReceiver(self.taps, self.registry.credentials,
                                        self._refused, self._tried),
                tls=self.identity_key_pair if self.endpoint.xds_tls else None,
                client_roots=lambda: self.ca.bundle_pem().encode())
            await self._xds.start()
        self.endpoint = dataclasses.replace(self.endpoint, xds_port=xds_port)
        self._identity_api = await start_app(
            make_identity_api(self.services), agent_host, self.endpoint.identity_port,
            ssl_context=server_tls)
        self.endpoint = dataclasses.replace(
            self.endpoint, identity_port=int(self._identity_api.addresses[0][1]))
        # The API last, and the record right after it with no await between: nobody can be
        # answered (nor find the API) before the record holds every port actually bound.
        self._api = await start_app(
            make_api(self.services, self.token, read_metrics_token(self.paths)), host,
            self.endpoint.api_port, handler_cancellation=True, shutdown_timeout=2.0)
        self.endpoint = dataclasses.replace(self.endpoint,
                                            api_port=int(self._api.addresses[0][1]))
        self.endpoint.save(self.paths)
        if self.replicas is not None and watch_from is not None:
            await self.replicas.start(watch_from, self.resources, self.registry.persist_all,
                                      self._ca_changed)
        self._tasks.append(asyncio.create_task(self._expire_orphans()))
        self._tasks.append(asyncio.create_task(self.identity.keep_server_identity()))
        for singleton in self.singletons:
            self._tasks.append(asyncio.create_task(singleton.run()))
        self._tasks.append(asyncio.create_task(keep_revocation_lists(
            self.ca, lambda: self._mesh().identity.crl_pem, self._changed)))
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
        self.config.close()
        if self.replicas is not None:
            await self.replicas.stop()
        self.sessions.stop()
        for task in self._tasks:
            task.cancel()
        if self._api is not None:
            await self._api.cleanup()
        if self._identity_api is not None:
            await self._identity_api.cleanup()
        if self._xds is not None:
            await self._xds.stop(grace=0.5)
        if self.workers is not None:
            await self.workers.stop()
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
        mesh = self._mesh()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "uptimeSeconds": round(time.time() - self.started_at, 1),
            "now": time.time(),  # other replicas measure clock offsets by it
            "stateDir": str(self.paths.root),
            "apiUrl": self.endpoint.api_url,
            "xdsAddress": _host_port(self.endpoint.agent_host, self.endpoint.xds_port),
            "xdsWorkers": self.workers.pids() if self.workers is not None else [],
            "xdsWorkerRestarts": self.workers.restarts if self.workers is not None else 0,
            "xdsTls": self.endpoint.xds_tls,
            "storeRevision": self._store_revision(),
            "meshVersion": mesh.version,
            "services": len(mesh.services),
            "workloads": len(self.registry.workloads()),
            "proxiesConnected": len(self.hub.connected()),
            "nacksTotal": self.hub.nacks.total,
            "identityAddress": _host_port(self.endpoint.agent_host,
                                          self.endpoint.identity_port),
            "trustDomain": self.ca.trust_domain,
            # The singleton work this control plane does now (on etcd: the elections it holds).
            "runs": [s.name for s in self.singletons if s.holding],
            "warnings": self.identity.expiry_warnings(),
        }


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
