"""What the CLI can see and change of one sidecar: its live admin pages (read-only), its log
levels and its Envoy log, all through the workload's agent, and what the control plane intends
to send it. Reads never rebuild the mesh: the intended config is the current snapshot's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tulle.controlplane.agents import Agents, Page
from tulle.errors import NotFoundError, UsageError
from tulle.xds.config import ProxyConfig
from tulle.xds.proxy import ProxyInfo

# Read-only Envoy admin pages the agent proxies to us (the agent enforces the same list).
ADMIN_PAGES = frozenset({"config_dump", "stats", "stats/prometheus", "clusters", "listeners",
                         "server_info", "ready", "memory", "certs", "runtime"})
MAX_TAIL = 10_000


class ProxyService:
    def __init__(self, agents: Agents, proxy_of: Callable[[str], ProxyInfo | None],
                 connected: Callable[[], list[str]],
                 config_for: Callable[[ProxyInfo], ProxyConfig]) -> None:
        self._agents = agents
        self._proxy_of = proxy_of
        self._connected = connected
        self._config_for = config_for

    async def admin_page(self, node_id: str, page: str, params: Mapping[str, str]) -> Page:
        if page not in ADMIN_PAGES:
            raise UsageError(f"admin page {page!r} is not available",
                             hint="readable pages: " + ", ".join(sorted(ADMIN_PAGES)))
        return await self._agents.page(node_id, f"/admin/{page}", params)

    async def log_levels(self, node_id: str, change: Mapping[str, Any]) -> dict[str, Any]:
        """``{}`` shows the levels; ``{"level": L}`` sets every logger; ``{"levels": {C: L}}``
        sets some. The agent checks them against its Envoy's own list."""
        return await self._agents.call(node_id, "POST", "/logging", body=dict(change))

    async def log_lines(self, node_id: str, *, tail: int | None = None,
                        since: str | None = None) -> dict[str, Any]:
        """The last ``tail`` lines, or the lines after cursor ``since`` (to follow)."""
        if since is not None:
            params = {"since": since}
        else:
            lines = 100 if tail is None else tail
            if not 0 < lines <= MAX_TAIL:
                raise UsageError(f"tail must be between 1 and {MAX_TAIL}", hint="e.g. ?tail=100")
            params = {"tail": str(lines)}
        return await self._agents.call(node_id, "GET", "/logs", params=params)

    def intended(self, node_id: str) -> ProxyConfig:
        """The resources the control plane would send this proxy now."""
        proxy = self._proxy_of(node_id)
        if proxy is None:
            raise NotFoundError(f"no connected proxy {node_id}",
                                hint="connected proxies: " + (", ".join(self._connected())
                                                              or "none"))
        return self._config_for(proxy)
