"""Agent sessions: registration, liveness and readiness of workloads.

An agent registers and keeps its session open: the first message carries its workload record
and Envoy bootstrap, then control messages (renew now, a new trust bundle) or heartbeats follow.
The workload lives exactly as long as that session. When the agent dies, even by SIGKILL, the
kernel closes its connection, the session closes, and the workload's endpoint leaves every proxy
on the next push.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from tulle.controlplane.services import Push, WaitSynced
from tulle.errors import UsageError
from tulle.model.mesh import MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.model.workload import Workload, WorkloadCertificate, WorkloadState
from tulle.registry.registry import Credentials, WorkloadRegistry

HEARTBEAT_S = 5.0
DRAIN_SYNC_TIMEOUT_S = 5.0

Message = dict[str, Any]


def readiness_probe(mesh: MeshSnapshot, ref: ServiceRef) -> str:
    """How an instance of ``ref`` shows it is ready: "grpc" (the standard grpc.health.v1
    check, or the port accepting if the application does not implement it) for gRPC
    services, "connect" (the port accepts) for the rest."""
    service = mesh.services.get(ref)
    return "grpc" if service is not None and service.protocol == "grpc" else "connect"


class AgentChannels:
    """Control messages for connected agents, by node id: one queue per live session."""

    END: ClassVar[Message] = {"end": True}  # the control plane is stopping: end the session

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[Message]] = {}

    def open(self, node_id: str) -> asyncio.Queue[Message]:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self.queues[node_id] = queue  # a re-registering agent replaces its old session
        return queue

    def close(self, node_id: str, queue: asyncio.Queue[Message]) -> None:
        if self.queues.get(node_id) is queue:
            del self.queues[node_id]

    def broadcast(self, message: Message) -> None:
        for queue in self.queues.values():
            queue.put_nowait(message)

    def end_all(self) -> None:
        self.broadcast(self.END)


@dataclass(frozen=True)
class StateChange:
    state: WorkloadState
    # Set for DRAINING: whether every other proxy ACKed the removal in time, and the version.
    synced: bool | None = None
    mesh_version: int | None = None


class AgentSession:
    """One agent's open session, as the HTTP layer streams it."""

    def __init__(self, service: SessionService, workload: Workload, session_id: int,
                 greeting: Message, queue: asyncio.Queue[Message]) -> None:
        self._service = service
        self.workload = workload
        self.id = session_id
        self.greeting = greeting  # the first message: workload, bootstrap, identity
        self.queue = queue

    async def next_message(self, heartbeat_s: float = HEARTBEAT_S) -> Message | None:
        """The next control message, a heartbeat when there is none for a while, or None
        when the control plane is stopping (the agent reconnects to the next one)."""
        try:
            message = await asyncio.wait_for(self.queue.get(), heartbeat_s)
        except TimeoutError:
            return {"heartbeat": int(time.time())}
        return None if message is AgentChannels.END else message

    def ended(self) -> None:
        """The agent's connection closed."""
        self._service.session_ended(self)


class SessionService:
    """``enrol``: what a registering agent needs for its first certificate; ``bootstrap``:
    its Envoy's bootstrap, given the workload and its xDS credential."""

    def __init__(self, registry: WorkloadRegistry, channels: AgentChannels, *,
                 enrol: Callable[[Workload], Message],
                 bootstrap: Callable[[Workload, str], Message], push: Push,
                 wait_synced: WaitSynced, connected: Callable[[], list[str]],
                 control_planes: Callable[[], list[Message]] = list,
                 mesh: Callable[[], MeshSnapshot] | None = None,
                 admit: Callable[[Workload], None] = lambda workload: None,
                 vouch: Callable[[str, bytes], WorkloadCertificate] | None = None,
                 adopt: Callable[[str, WorkloadCertificate], None] = lambda n, c: None
                 ) -> None:
        """``admit`` raises for a workload that may not register (a revoked one); ``vouch``
        finds the certificate a reconnecting agent presents among those issued to its node
        (raises if it is not one), and ``adopt`` makes it vouch for the node here."""
        self._admit = admit
        self._vouch = vouch
        self._adopt = adopt
        self._control_planes = control_planes
        self._mesh = mesh
        self._probes: dict[str, str] = {}  # node id -> the readiness probe it was told
        self._registry = registry
        self._channels = channels
        self._enrol = enrol
        self._bootstrap = bootstrap
        self._push = push
        self._wait_synced = wait_synced
        self._connected = connected
        self._stopping = False

    def open(self, workload: Workload, credentials: Credentials,
             certificate: bytes | None = None) -> AgentSession:
        """``certificate``: the TLS client certificate (DER) of an agent on another host that
        opens its session again, here or on another replica; it must be one issued to this
        node, and it then vouches for the node here."""
        self._admit(workload)
        held = None
        if certificate is not None:
            if self._vouch is None:
                raise UsageError("this control plane takes no sessions by certificate")
            held = self._vouch(workload.node_id, certificate)
        session_id = self._registry.register(workload, credentials)
        if held is not None:
            self._adopt(workload.node_id, held)
        registered = self._registry.get(workload.node_id)
        assert registered is not None
        greeting = {
            "session": session_id,
            "workload": registered.to_dict(),
            "bootstrap": self._bootstrap(registered, credentials.xds_token),
            "identity": self._enrol(registered),
            # Every replica the agent may fail over to, this one first (empty: no others).
            "controlPlanes": self._control_planes(),
        }
        if self._mesh is not None:
            probe = readiness_probe(self._mesh(), registered.service_ref)
            greeting["probe"] = self._probes[workload.node_id] = probe
        queue = self._channels.open(workload.node_id)
        return AgentSession(self, registered, session_id, greeting, queue)

    def end(self, node_id: str) -> None:
        """End a workload's session from our side (it was revoked): its agent is told."""
        queue = self._channels.queues.get(node_id)
        if queue is not None:
            queue.put_nowait(AgentChannels.END)

    def published(self, mesh: MeshSnapshot) -> None:
        """A new snapshot: tell each connected agent whose readiness probe it changed (a
        Service declared or redeclared its protocol)."""
        for node_id, queue in self._channels.queues.items():
            workload = self._registry.get(node_id)
            if workload is None:
                continue
            probe = readiness_probe(mesh, workload.service_ref)
            if self._probes.get(node_id) != probe:
                self._probes[node_id] = probe
                queue.put_nowait({"probe": probe})

    def session_ended(self, session: AgentSession) -> None:
        node_id = session.workload.node_id
        self._channels.close(node_id, session.queue)
        if node_id not in self._channels.queues:
            self._probes.pop(node_id, None)
        # Sessions that end because *we* stop keep their registrations: agents come back.
        if not self._stopping:
            self._registry.session_ended(node_id, session.id)

    async def set_state(self, node_id: str, raw_state: object, reason: str = ""
                        ) -> StateChange:
        try:
            state = WorkloadState(str(raw_state))
        except ValueError as exc:
            raise UsageError(f"unknown workload state {raw_state!r}",
                             hint="one of: " + ", ".join(s.value for s in WorkloadState)
                             ) from exc
        self._registry.set_state(node_id, state, reason)
        if state is not WorkloadState.DRAINING:
            return StateChange(state)
        # Push the removal now and wait until every proxy has it: only then can the agent stop
        # its application without failing requests that were on their way.
        version = self._push()
        others = [n for n in self._connected() if n != node_id]
        synced = await self._wait_synced(version, DRAIN_SYNC_TIMEOUT_S, others)
        return StateChange(state, synced, version)

    def stop(self) -> None:
        """The control plane is stopping: end every session, keep every registration."""
        self._stopping = True
        self._channels.end_all()
