"""The control plane's domain services, and the small contracts they are built with.

Each service is constructed with exactly the collaborators it uses (the store, the registry,
the CA, the callables below) and knows nothing of HTTP or of the control plane object: the HTTP
layer (``tulle.controlplane.api``) parses requests into typed arguments and renders results,
and ``tulle.controlplane.app`` wires the pieces together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class WaitSynced(Protocol):
    """``XdsHub.wait_synced``: wait until every (or each named) connected proxy has ACKed
    ``mesh_version``; False when ``timeout`` passed first."""

    async def __call__(self, mesh_version: int, timeout: float,
                       nodes: Iterable[str] | None = None) -> bool: ...


class Push(Protocol):
    """Rebuild the mesh snapshot now and offer it to every proxy; returns its version."""

    def __call__(self) -> int: ...


class PushSoon(Protocol):
    """Rebuild within a few milliseconds, one rebuild shared by every caller in that window;
    returns the mesh version."""

    async def __call__(self) -> int: ...
