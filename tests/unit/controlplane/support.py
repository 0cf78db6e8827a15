"""Builders shared by the control-plane service tests: a real registry on a throwaway store
(it is cheap and pure), workloads and credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from tests.unit.model.workloads import workload
from tulle.model.workload import WorkloadState
from tulle.registry.registry import Credentials, WorkloadRegistry
from tulle.store.sqlite import SqliteStore

T = TypeVar("T")
CREDS = Credentials(xds_token="x" * 20, agent_token="a" * 20)


def registry(tmp_path: Path, *names: str) -> WorkloadRegistry:
    """A registry holding a live session for each ``service-N`` name."""
    out = WorkloadRegistry(SqliteStore(tmp_path / "store.db"), lambda: None)
    for name in names:
        out.register(workload(name, name.rsplit("-", 1)[0], state=WorkloadState.READY), CREDS)
    return out


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())  # type: ignore[arg-type]
