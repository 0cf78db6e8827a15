"""Calls from the control plane to workloads' agents: one place that knows where an agent
listens, how to authenticate to it, and how its answers and failures read.

Readers: the proxy views (admin pages, log levels, logs), `check` (through those views) and the
diagnosis (every sidecar's ``/clusters`` at once, and a telemetry report from each, now). The
agent proxies a fixed list of read-only Envoy admin pages, one narrow log-level route and the
report on demand; it checks its own token on each request.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from tulle.errors import NotFoundError, TulleError, UsageError
from tulle.model.workload import Workload
from tulle.registry.registry import Credentials
from tulle.settings import LOOPBACK

CALL_TIMEOUT_S = 15.0  # one JSON exchange (log levels, logs)
PAGE_TIMEOUT_S = 10.0  # one admin page


@dataclass(frozen=True)
class AgentTarget:
    base_url: str  # "http://ADDRESS:AGENT_PORT", https for an agent on another host
    headers: Mapping[str, str]  # the agent token it chose at registration
    # An agent on another host: TLS, verified against the trust bundle, with the control
    # plane's certificate as the client certificate (that agent answers no one else).
    tls: ssl.SSLContext | None = None

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        return self.tls if self.tls is not None else True

    def url(self, path: str) -> str:
        return self.base_url + path


@dataclass(frozen=True)
class Page:
    """An admin page as the agent returned it."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class PageRead:
    """One agent's answer in a fan-out read: the page, or why there is none."""

    node_id: str
    body: bytes | None = None
    error: str | None = None
    sent_at: float | None = None  # wall clock, just before the request went (with ``body``)
    answered_at: float | None = None  # ... and once its answer was read


class Agents(Protocol):
    """The calls services make to agents (:class:`AgentClient` over HTTP; fakes in tests)."""

    async def page(self, node_id: str, path: str, params: Mapping[str, str]) -> Page: ...

    async def call(self, node_id: str, method: str, path: str, *, body: Any = None,
                   params: Mapping[str, str] | None = None) -> dict[str, Any]: ...

    async def read_all(self, nodes: Iterable[str], path: str, params: Mapping[str, str], *,
                       concurrency: int, timeout_s: float, deadline_s: float,
                       method: str = "GET") -> dict[str, PageRead]: ...


class AgentClient:
    """``workload`` and ``credentials``: the registry's, by node id (None: not registered)."""

    def __init__(self, workload: Callable[[str], Workload | None],
                 credentials: Callable[[str], Credentials | None],
                 remote_tls: Callable[[], ssl.SSLContext] | None = None) -> None:
        """``remote_tls``: the client TLS context for agents on other hosts."""
        self._workload = workload
        self._credentials = credentials
        self._remote_tls = remote_tls

    def target(self, node_id: str) -> AgentTarget | None:
        """The agent of a registered workload, or None when ``node_id`` is not registered."""
        workload = self._workload(node_id)
        credentials = self._credentials(node_id)
        if workload is None or credentials is None:
            return None
        headers = {"Authorization": f"Bearer {credentials.agent_token}"}
        if workload.remote and self._remote_tls is not None:
            host = f"[{workload.address}]" if ":" in workload.address else workload.address
            return AgentTarget(f"https://{host}:{workload.agent_port}", headers,
                               self._remote_tls())
        # This host's agents listen on loopback, whatever address their workload has.
        return AgentTarget(f"http://{LOOPBACK}:{workload.agent_port}", headers)

    def _require(self, node_id: str, hint: str) -> AgentTarget:
        agent = self.target(node_id)
        if agent is None:
            raise NotFoundError(f"no proxy {node_id}", hint=hint)
        return agent

    async def page(self, node_id: str, path: str, params: Mapping[str, str]) -> Page:
        """``GET path`` on the agent (an admin page), as it answered."""
        agent = self._require(node_id, "list proxies with `tulle get workloads`")
        timeout = aiohttp.ClientTimeout(total=PAGE_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as client, \
                    client.get(agent.url(path), params=params, headers=agent.headers,
                               ssl=agent.ssl) as answer:
                return Page(answer.status, await answer.read(), answer.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _no_answer(node_id, exc) from exc

    async def call(self, node_id: str, method: str, path: str, *, body: Any = None,
                   params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One JSON exchange with the agent; its errors come back as tulle errors."""
        agent = self._require(node_id, "list proxies with `tulle proxy-status`")
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as client, \
                    client.request(method, agent.url(path), params=params,
                                   headers=agent.headers, json=body, ssl=agent.ssl) as answer:
                status = answer.status
                raw = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _no_answer(node_id, exc) from exc
        return _json_answer(node_id, path, status, raw)

    async def read_all(self, nodes: Iterable[str], path: str, params: Mapping[str, str], *,
                       concurrency: int, timeout_s: float, deadline_s: float,
                       method: str = "GET") -> dict[str, PageRead]:
        """``GET path`` (or ``POST`` with an empty JSON body) on every named agent at once:
        at most ``concurrency`` in flight, ``timeout_s`` each and ``deadline_s`` for all.
        Never raises: a failure is a result."""
        limit = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                         connector=connector) as client:

            async def read(node: str) -> PageRead:
                async with limit:
                    return await self._read_one(client, node, method, path, params)

            tasks = {node: asyncio.create_task(read(node)) for node in sorted(nodes)}
            done, pending = await asyncio.wait(tasks.values(), timeout=deadline_s) \
                if tasks else (set(), set())
            for task in pending:
                task.cancel()
        out = {}
        for node, task in tasks.items():
            if task in done and task.exception() is None:
                out[node] = task.result()
            else:
                out[node] = PageRead(node, error=f"no answer within the deadline "
                                                 f"({deadline_s:g}s for every proxy)")
        return out

    async def _read_one(self, client: aiohttp.ClientSession, node: str, method: str,
                        path: str, params: Mapping[str, str]) -> PageRead:
        agent = self.target(node)
        if agent is None:
            return PageRead(node, error="not registered")
        sent_at = time.time()
        try:
            async with client.request(method, agent.url(path), params=params,
                                      headers=agent.headers, ssl=agent.ssl,
                                      json={} if method == "POST" else None) as answer:
                body = await answer.read()
                if answer.status != 200:
                    return PageRead(node, error=f"agent answered HTTP {answer.status}: "
                                    f"{body[:200].decode(errors='replace').strip()}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            what = "no answer in time" if isinstance(exc, TimeoutError) \
                else f"{type(exc).__name__} {exc}"
            return PageRead(node, error=f"agent did not answer: {what}")
        return PageRead(node, body, sent_at=sent_at, answered_at=time.time())


def _no_answer(node_id: str, exc: BaseException) -> TulleError:
    return TulleError(f"the agent of {node_id} did not answer: {exc}",
                      hint="check the workload is running: `tulle get workloads`")


def _json_answer(node_id: str, path: str, status: int, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if status == 200 and isinstance(data, dict):
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        if status == 400:
            raise UsageError(str(error.get("message")), hint=error.get("hint"))
        raise TulleError(f"{node_id}: {error.get('message')}", hint=error.get("hint"))
    if status == 404:
        raise TulleError(f"the agent of {node_id} does not support {path}",
                         hint="restart the workload with this version of tulle")
    raise TulleError(f"the agent of {node_id} answered HTTP {status}",
                     hint="see agent.log in the workload's state directory")
