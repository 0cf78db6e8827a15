"""The registry: registration, liveness through sessions, and restore after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.model.workloads import workload
from tulle.errors import ConflictError, NotFoundError
from tulle.model.workload import WorkloadCertificate, WorkloadState
from tulle.registry.registry import Credentials, WorkloadRegistry
from tulle.store.sqlite import SqliteStore

CREDS = Credentials(xds_token="x" * 20, agent_token="a" * 20)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.changes = 0
        self.removed: list[str] = []

    def changed(self) -> None:
        self.changes += 1


def make(tmp_path: Path, clock: Clock | None = None) -> tuple[WorkloadRegistry, Recorder]:
    recorder = Recorder()
    registry = WorkloadRegistry(SqliteStore(tmp_path / "store.db"), recorder.changed,
                                on_removed=recorder.removed.append, grace_s=15,
                                clock=clock or Clock())
    return registry, recorder


def test_register_and_end_session_removes(tmp_path: Path) -> None:
    registry, recorder = make(tmp_path)
    session = registry.register(workload("books-1", "books", state=WorkloadState.STARTING),
                                CREDS)
    assert registry.is_connected("books-1.default")
    assert registry.authenticate("books-1.default", "x" * 20) is not None
    assert registry.authenticate("books-1.default", "wrong" * 4) is None
    assert registry.authenticate("nobody.default", "x" * 20) is None
    registry.session_ended("books-1.default", session + 99)  # not its session: ignored
    assert registry.get("books-1.default") is not None
    registry.session_ended("books-1.default", session)
    assert registry.get("books-1.default") is None
    assert recorder.removed == ["books-1.default"]
    assert recorder.changes == 2


def test_a_live_name_cannot_be_taken(tmp_path: Path) -> None:
    registry, _ = make(tmp_path)
    registry.register(workload("books-1", "books"), CREDS)
    with pytest.raises(ConflictError, match="already running"):
        registry.register(workload("books-1", "books"), CREDS)
    registry.register(workload("books-1", "books", namespace="other"), CREDS)


def test_state_changes_persist_and_unknown_workloads_fail(tmp_path: Path) -> None:
    registry, recorder = make(tmp_path)
    registry.register(workload("books-1", "books", state=WorkloadState.STARTING), CREDS)
    registry.set_state("books-1.default", WorkloadState.READY)
    registry.set_state("books-1.default", WorkloadState.READY)  # no change, no rebuild
    assert recorder.changes == 2
    reopened, _ = make(tmp_path)
    reopened.restore()
    restored = reopened.get("books-1.default")
    assert restored is not None and restored.state is WorkloadState.READY
    with pytest.raises(NotFoundError):
        registry.set_state("nobody.default", WorkloadState.READY)


def test_restored_workloads_wait_for_their_agents_then_expire(tmp_path: Path) -> None:
    first, _ = make(tmp_path)
    first.register(workload("books-1", "books"), CREDS)
    first.register(workload("books-2", "books"), CREDS)
    clock = Clock()
    registry, recorder = make(tmp_path, clock)
    assert registry.restore() == 2
    assert not registry.is_connected("books-1.default")
    # books-1's agent comes back with the same credentials: it keeps its readiness.
    back = workload("books-1", "books", state=WorkloadState.STARTING)
    registry.register(back, CREDS)
    assert registry.get("books-1.default").state is WorkloadState.READY  # type: ignore[union-attr]
    clock.now += 14
    assert registry.expire_orphans() == []
    clock.now += 2
    assert registry.expire_orphans() == ["books-2.default"]
    assert [w.name for w in registry.workloads()] == ["books-1"]
    assert recorder.removed == ["books-2.default"]


def test_a_new_agent_with_other_credentials_starts_over(tmp_path: Path) -> None:
    first, _ = make(tmp_path)
    first.register(workload("books-1", "books"), CREDS)
    registry, _ = make(tmp_path)
    registry.restore()
    other = Credentials(xds_token="y" * 20, agent_token="b" * 20)
    registry.register(workload("books-1", "books", state=WorkloadState.STARTING), other)
    assert registry.get("books-1.default").state is WorkloadState.STARTING  # type: ignore[union-attr]
    assert registry.authenticate("books-1.default", "x" * 20) is None


def certificate(serial: str) -> WorkloadCertificate:
    return WorkloadCertificate("spiffe://x/ns/default/sa/books", serial, 0.0, 1e12, "i",
                               f"chain-{serial}", f"/w/key-{serial}.pem", 0.0)


def serials(registry: WorkloadRegistry, node: str) -> list[str]:
    return [c.serial for c in registry.renewal_certificates(node)]


def test_the_current_and_the_previous_certificate_vouch_across_a_restart(tmp_path: Path
                                                                         ) -> None:
    first, _ = make(tmp_path)
    first.register(workload("books-1", "books"), CREDS)
    first.register(workload("books-2", "books"), CREDS)
    assert serials(first, "books-1.default") == []
    for serial in ("1", "2", "3"):
        first.set_certificate("books-1.default", certificate(serial))
    assert serials(first, "books-1.default") == ["3", "2"]
    assert serials(first, "books-2.default") == [], "a sibling's certificates are its own"
    registry, _ = make(tmp_path)
    registry.restore()
    registry.register(workload("books-1", "books"), CREDS)  # the same agent, back
    assert serials(registry, "books-1.default") == ["3", "2"]
    # A new agent (other credentials) starts over: nothing of the old one vouches.
    registry.session_ended("books-1.default", 1)
    registry.register(workload("books-1", "books"),
                      Credentials(xds_token="y" * 20, agent_token="b" * 20))
    assert serials(registry, "books-1.default") == []

def test_a_not_ready_reason_is_kept_until_ready_and_only_the_state_rebuilds(
        tmp_path: Path) -> None:
    registry, recorder = make(tmp_path)
    registry.register(workload("greeter-1", "greeter"), CREDS)
    node = "greeter-1.default"
    registry.set_state(node, WorkloadState.NOT_READY, "the gRPC health check says NOT_SERVING")
    registry.set_state(node, WorkloadState.NOT_READY, "the application does not accept")
    got = registry.get(node)
    assert got is not None and got.state_reason == "the application does not accept"
    assert got.to_dict()["stateReason"] == "the application does not accept"
    assert recorder.changes == 2  # registration, then not-ready: a new reason moves nothing
    reopened, _ = make(tmp_path)
    reopened.restore()
    restored = reopened.get(node)
    assert restored is not None and restored.state_reason == "the application does not accept"
    ready = registry.set_state(node, WorkloadState.READY, "ignored when ready")
    assert ready.state_reason == ""
