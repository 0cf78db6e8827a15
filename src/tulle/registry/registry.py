"""The workload registry: who is running, whether they are ready, and whether they are alive.

A workload lives as long as its agent's session: when the session's connection closes (the agent
exited, or was killed: the kernel closes its sockets), the workload is removed at once. When the
control plane itself restarts, registrations are restored from the store and kept, endpoints
included, for a grace period in which agents reconnect; those that do not are removed.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tulle.errors import ConflictError, NotFoundError
from tulle.model.workload import Workload, WorkloadCertificate, WorkloadState
from tulle.security import tokens_match
from tulle.store.base import Store
from tulle.xds.proxy import ProxyInfo

log = logging.getLogger("tulle.registry")

DEFAULT_GRACE_S = 15.0


@dataclass(frozen=True)
class Credentials:
    """Secrets an agent chose at registration. Never returned by the API, never logged."""

    xds_token: str  # what its Envoy presents on the ADS stream
    agent_token: str  # what the control plane presents to the agent's admin proxy


class WorkloadRegistry:
    def __init__(self, store: Store, on_change: Callable[[], None], *,
                 on_removed: Callable[[str], None] = lambda node_id: None,
                 grace_s: float = DEFAULT_GRACE_S, clock: Callable[[], float] = time.monotonic,
                 write: Callable[[Callable[[], None]], None] = lambda do: do()) -> None:
        """``write``: runs a store write (a registration saved or deleted); by default at once.
        With a remote store it queues them for a thread, in order, off the event loop."""
        self._write = write
        self._store = store
        self._on_change = on_change
        self._on_removed = on_removed
        self._grace_s = grace_s
        self._clock = clock
        self._workloads: dict[str, Workload] = {}
        self._credentials: dict[str, Credentials] = {}
        self._certificates: dict[str, WorkloadCertificate] = {}
        # The one each current certificate replaced: it still vouches for a renewal, for an
        # agent that did not get the answer that carried the current one.
        self._previous: dict[str, WorkloadCertificate] = {}
        self._sessions: dict[str, int] = {}  # node id -> live session id
        self._orphans: dict[str, float] = {}  # restored, agent not back yet -> deadline
        self._session_ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------

    def restore(self) -> int:
        """Load registrations kept by a previous run of the control plane."""
        deadline = self._clock() + self._grace_s
        for record in self._store.workloads():
            workload = Workload.from_dict(record["workload"])
            self._workloads[workload.node_id] = workload
            self._credentials[workload.node_id] = Credentials(**record["credentials"])
            if record.get("certificate"):
                self._certificates[workload.node_id] = WorkloadCertificate.from_dict(
                    record["certificate"])
            if record.get("previousCertificate"):
                self._previous[workload.node_id] = WorkloadCertificate.from_dict(
                    record["previousCertificate"])
            self._orphans[workload.node_id] = deadline
        return len(self._workloads)

    def register(self, workload: Workload, credentials: Credentials) -> int:
        """Add or re-add a workload; returns the id of its new session."""
        node_id = workload.node_id
        if node_id in self._sessions:
            raise ConflictError(
                f"a workload named {workload.name} is already running in namespace "
                f"{workload.namespace}",
                hint="choose another instance name with --name, or stop the other one")
        previous = self._workloads.get(node_id)
        if previous is not None and self._credentials.get(node_id) == credentials:
            # The same agent is back after a control-plane restart: keep its readiness and
            # certificate so that neither its endpoint nor its identity flaps.
            workload = dataclasses.replace(workload, state=previous.state,
                                           registered_at=previous.registered_at)
        else:
            self._certificates.pop(node_id, None)
            self._previous.pop(node_id, None)
        self._workloads[node_id] = workload
        self._credentials[node_id] = credentials
        self._orphans.pop(node_id, None)
        session = next(self._session_ids)
        self._sessions[node_id] = session
        self._persist(workload)
        log.info("registered %s (service %s, session %d)", node_id,
                 workload.service_ref, session)
        self._on_change()
        return session

    def session_ended(self, node_id: str, session: int) -> None:
        """The agent's connection closed: it is gone (a newer session may have replaced it).

        An agent on another host whose session ends without draining was most likely cut
        off (a partition, its host frozen): its endpoint leaves at once, but its registration,
        credentials and certificates wait ``grace_s`` for the same agent to come back, as a
        restored one's do after a control-plane restart. Without them its certificate would
        vouch for nothing, and the agent, which has no join token left, could never get back
        in. An agent on this host whose session ends has exited: it is removed at once."""
        if self._sessions.get(node_id) != session:
            return
        del self._sessions[node_id]
        workload = self._workloads.get(node_id)
        if workload is None or not workload.remote or workload.state is WorkloadState.DRAINING:
            self.remove(node_id, reason="agent session ended")
            return
        self._orphans[node_id] = self._clock() + self._grace_s
        self.set_state(node_id, WorkloadState.NOT_READY,
                       f"its agent's session ended without draining (its host cut off?); "
                       f"kept {self._grace_s:.0f}s for it to come back")

    def set_state(self, node_id: str, state: WorkloadState, reason: str = "") -> Workload:
        """``reason``: why it is not ready, as its agent's probe found (kept only then)."""
        workload = self._get(node_id)
        if state is WorkloadState.READY:
            reason = ""
        if (workload.state, workload.state_reason) != (state, reason):
            moved = workload.state is not state
            workload = dataclasses.replace(workload, state=state, state_reason=reason)
            self._workloads[node_id] = workload
            self._persist(workload)
            log.info("%s is %s%s", node_id, state.value, f": {reason}" if reason else "")
            if moved:  # only the state decides the endpoints
                self._on_change()
        return workload

    def set_certificate(self, node_id: str, certificate: WorkloadCertificate) -> None:
        self._get(node_id)
        current = self._certificates.get(node_id)
        if current is not None:
            self._previous[node_id] = current
        self._certificates[node_id] = certificate
        self._persist(self._workloads[node_id])
        self._on_change()

    def remove(self, node_id: str, *, reason: str) -> None:
        if self._workloads.pop(node_id, None) is None:
            return
        self._credentials.pop(node_id, None)
        self._certificates.pop(node_id, None)
        self._previous.pop(node_id, None)
        self._orphans.pop(node_id, None)
        self._sessions.pop(node_id, None)
        self._write(lambda: self._store.delete_workload(node_id))
        log.info("removed %s: %s", node_id, reason)
        self._on_removed(node_id)
        self._on_change()

    def expire_orphans(self) -> list[str]:
        """Remove restored workloads whose agents did not come back in time."""
        now = self._clock()
        expired = [n for n, deadline in self._orphans.items() if deadline <= now]
        for node_id in expired:
            self.remove(node_id, reason="its agent did not come back in time (after a "
                                        "control-plane restart, or a lost session)")
        return expired

    # -- queries ---------------------------------------------------------------------------

    def workloads(self) -> list[Workload]:
        return sorted(self._workloads.values(), key=lambda w: w.node_id)

    def get(self, node_id: str) -> Workload | None:
        return self._workloads.get(node_id)

    def credentials(self, node_id: str) -> Credentials | None:
        return self._credentials.get(node_id)

    def certificate(self, node_id: str) -> WorkloadCertificate | None:
        return self._certificates.get(node_id)

    def certificates(self) -> dict[str, WorkloadCertificate]:
        return dict(self._certificates)

    def renewal_certificates(self, node_id: str) -> tuple[WorkloadCertificate, ...]:
        """The certificates that may vouch for ``node_id``'s next renewal: its current one and
        the one before it. Only these: another instance's, even of the same identity, never.
        """
        return tuple(c for c in (self._certificates.get(node_id), self._previous.get(node_id))
                     if c is not None)

    def is_connected(self, node_id: str) -> bool:
        return node_id in self._sessions

    def authenticate(self, node_id: str, token: str) -> ProxyInfo | None:
        workload = self._workloads.get(node_id)
        credentials = self._credentials.get(node_id)
        if workload is None or credentials is None:
            return None
        if not tokens_match(credentials.xds_token, token):
            return None
        return ProxyInfo.of(workload)

    # -- internals -------------------------------------------------------------------------

    def _get(self, node_id: str) -> Workload:
        workload = self._workloads.get(node_id)
        if workload is None:
            raise NotFoundError(f"no workload {node_id} is registered",
                                hint="list workloads with `tulle get workloads`")
        return workload

    def persist_all(self) -> None:
        """Write every registration to the store again (a shared store's lease lapsed)."""
        for workload in list(self._workloads.values()):
            self._persist(workload)

    def _persist(self, workload: Workload) -> None:
        credentials = self._credentials[workload.node_id]
        certificate = self._certificates.get(workload.node_id)
        previous = self._previous.get(workload.node_id)
        record = {
            "workload": workload.to_dict(),
            "credentials": dataclasses.asdict(credentials),
            "certificate": certificate.to_dict() if certificate else None,
            "previousCertificate": previous.to_dict() if previous else None,
        }
        self._write(lambda: self._store.save_workload(workload.node_id, record))
