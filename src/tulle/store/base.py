"""The contract between the control plane and its persistent store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tulle.model.meta import ResourceKey

Action = Literal["created", "configured", "unchanged", "deleted"]


@dataclass(frozen=True)
class StoredResource:
    key: ResourceKey
    manifest: Mapping[str, Any]
    revision: int  # the store revision that last changed this resource
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ApplyResult:
    key: ResourceKey
    action: Action
    revision: int


@dataclass(frozen=True)
class Change:
    """One entry of the history: what a revision did to one resource."""

    revision: int
    at: float
    key: ResourceKey
    action: Action
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


class Store(Protocol):
    def resources(self) -> list[StoredResource]: ...

    def resource(self, key: ResourceKey) -> StoredResource | None: ...

    def revision(self) -> int: ...

    def apply(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]]
              ) -> list[ApplyResult]:
        """Store every manifest in one transaction: all of them, or none."""

    def delete(self, key: ResourceKey) -> ApplyResult: ...

    def replace(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]],
                deletes: Sequence[ResourceKey]) -> list[ApplyResult]:
        """Store ``manifests`` and delete ``deletes`` in one transaction and one revision."""

    def history(self, key: ResourceKey | None = None, limit: int = 100) -> list[Change]: ...

    def changes_after(self, revision: int) -> list[Change]:
        """Every change made after ``revision``, oldest first."""

    def oldest_revision(self) -> int:
        """The oldest revision whose changes the history still holds (0 when empty)."""

    def trim_history(self, keep: int, fence: tuple[str, int] | None = None) -> int:
        """Drop the history of every revision but the newest ``keep``; how many entries
        went. ``fence``: (election, revision): only while this replica holds it."""

    def workloads(self) -> list[Mapping[str, Any]]: ...

    def save_workload(self, node_id: str, record: Mapping[str, Any]) -> None: ...

    def delete_workload(self, node_id: str) -> None: ...

    def close(self) -> None: ...
