"""Fakes of the control plane's collaborators, for unit tests of its services.

Each stands in for one seam a service is built with (see ``tulle.controlplane.services``): the
xDS hub's view of connected proxies, the config path's push callables, the agents. They record
what the service asked of them, and answer as scripted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tulle.controlplane.agents import Page, PageRead
from tulle.errors import NotFoundError


@dataclass
class FakeProxies:
    """Connected proxies: ``wait_synced`` answers ``synced`` at once and records each wait."""

    nodes: list[str] = field(default_factory=list)
    synced: bool = True
    waits: list[tuple[int, float, tuple[str, ...] | None]] = field(default_factory=list)

    def connected(self) -> list[str]:
        return sorted(self.nodes)

    def is_connected(self, node_id: str) -> bool:
        return node_id in self.nodes

    async def wait_synced(self, mesh_version: int, timeout: float,
                          nodes: Iterable[str] | None = None) -> bool:
        self.waits.append((mesh_version, timeout, None if nodes is None else tuple(nodes)))
        return self.synced


@dataclass
class FakePush:
    """The config path: each push (now or soon) builds a new mesh version."""

    version: int = 0
    pushes: int = 0
    changes: int = 0

    def __call__(self) -> int:
        self.pushes += 1
        self.version += 1
        return self.version

    async def soon(self) -> int:
        return self()

    def changed(self) -> None:
        self.changes += 1


@dataclass
class FakeAgents:
    """Agents that answer from ``pages`` (node -> path -> body) and ``calls`` (node -> path ->
    JSON); an unknown node is not registered."""

    pages: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    calls: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    asked: list[tuple[str, str, Any]] = field(default_factory=list)

    async def page(self, node_id: str, path: str, params: Mapping[str, str]) -> Page:
        self.asked.append((node_id, path, dict(params)))
        if node_id not in self.pages:
            raise NotFoundError(f"no proxy {node_id}")
        body = self.pages[node_id].get(path)
        return Page(200, body, "application/json") if body is not None \
            else Page(404, b"not found", "text/plain")

    async def call(self, node_id: str, method: str, path: str, *, body: Any = None,
                   params: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.asked.append((node_id, f"{method} {path}", body if body is not None else params))
        if node_id not in self.calls:
            raise NotFoundError(f"no proxy {node_id}")
        return dict(self.calls[node_id][path])

    async def read_all(self, nodes: Iterable[str], path: str, params: Mapping[str, str], *,
                       concurrency: int, timeout_s: float, deadline_s: float,
                       method: str = "GET") -> dict[str, PageRead]:
        """A POST is answered from ``calls`` (JSON), a GET from ``pages``."""
        out = {}
        for node in sorted(nodes):
            answer = self.calls.get(node, {}).get(path) if method == "POST" else None
            body = json.dumps(answer).encode() if answer is not None \
                else self.pages.get(node, {}).get(path)
            out[node] = PageRead(node, body) if body is not None \
                else PageRead(node, error="agent did not answer: ConnectionRefusedError")
        return out
