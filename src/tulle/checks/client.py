"""Every control-plane call `tulle check` makes, in one place, each with a short timeout.

Nothing is cached: each check reads what it needs when it runs (calls to a local API cost
milliseconds), so no check depends on another having run first, and a retrying check sees
the state as it is now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tulle.client import ApiClient
from tulle.errors import ApiError, AuthError, ControlPlaneUnavailable, TulleError
from tulle.settings import StatePaths
from tulle.xds.admission import StreamEvent
from tulle.xds.sync import ProxySync

REQUEST_TIMEOUT_S = 4.0
# One proxy's admin page, through the control plane and its agent: a frozen proxy costs a
# check this long, not the control plane's own page timeout (10 s).
ADMIN_TIMEOUT_S = 1.5
REFRESH_TIMEOUT_S = 4.0  # the control plane gives its agents 2.5 s


@dataclass(frozen=True)
class LockState:
    """Whether a control plane holds the state directory's lock, and its pid."""

    held: bool
    pid: int | None


@dataclass(frozen=True)
class Probe:
    """One raw answer of the API: the HTTP status and the decoded body (None if not JSON)."""

    status: int
    body: Any


class CheckApi:
    def __init__(self, paths: StatePaths, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.paths = paths
        self.timeout = timeout
        self._client: ApiClient | None = None
        # Proxies whose admin page did not come in time, this run: the next check that reads
        # them fails at once with the same reason, instead of waiting again.
        self._unanswered: dict[str, ControlPlaneUnavailable] = {}
        self._refreshed = False

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            try:
                self._client = ApiClient.from_state(self.paths, timeout=self.timeout)
            except (OSError, ValueError, KeyError) as exc:
                raise ControlPlaneUnavailable(
                    f"cannot read the control plane's address and token in {self.paths.root}: "
                    f"{exc}", hint="start it with `tulle up`") from exc
        return self._client

    # -- local facts -------------------------------------------------------------------------

    def lock_state(self) -> LockState:
        from tulle.local import state_lock_held, state_lock_pid

        return LockState(state_lock_held(self.paths), state_lock_pid(self.paths))

    # -- the API -----------------------------------------------------------------------------

    def probe_status(self) -> Probe:
        """GET /v1/status as it is: the answer even when it is an error."""
        status, payload = self.client.raw("GET", "/v1/status", timeout=self.timeout)
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            body = None
        return Probe(status, body)

    def refresh(self) -> None:
        """Once per run, before the first read of a proxy or of telemetry: every agent reports
        now, so the checks judge the traffic up to now, not up to the last 5 s report; and a
        proxy whose agent or Envoy did not answer is known before any read waits for it."""
        if self._refreshed:
            return
        self._refreshed = True
        try:
            answer = self.client.post("/v1/telemetry/refresh", {}, timeout=REFRESH_TIMEOUT_S)
        except TulleError:
            return  # an older control plane, or a slow one: read what there is
        for missing in answer.get("missing", ()):
            if not missing.get("answering", True):
                self._unanswered[str(missing["proxy"])] = ControlPlaneUnavailable(
                    f"{missing['proxy']} did not answer: {missing.get('reason')}",
                    hint="see `tulle diagnose` for why (a frozen Envoy or agent)")

    def get(self, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return self.client.get(path, query, timeout=self.timeout)

    def status(self) -> dict[str, Any]:
        probe = self.probe_status()
        if probe.status == 401:
            raise AuthError("the control plane refused our API token")
        if probe.status != 200 or not isinstance(probe.body, dict):
            raise ApiError(f"GET /v1/status answered HTTP {probe.status}")
        return probe.body

    def workloads(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/workloads"))

    def proxies(self) -> list[ProxySync]:
        return [ProxySync.from_json(p) for p in self.get("/v1/proxies")]

    def stream_events(self) -> list[StreamEvent]:
        return [StreamEvent.from_json(e) for e in self.get("/v1/xds/stream-events")]

    def services(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/services"))

    def store_health(self) -> dict[str, Any]:
        return dict(self.get("/v1/health/store"))

    def identity(self) -> dict[str, Any]:
        return dict(self.get("/v1/health/identity"))

    def versions(self) -> dict[str, Any]:
        return dict(self.get("/v1/health/versions"))

    def replicas(self) -> dict[str, Any]:
        return dict(self.get("/v1/health/replicas"))

    def hosts(self) -> dict[str, Any]:
        return dict(self.get("/v1/health/hosts"))

    def join_tokens(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/join-tokens")["tokens"])

    def edges(self, window_s: float) -> dict[str, Any]:
        self.refresh()
        return dict(self.get("/v1/health/edges", {"window": window_s}))

    def telemetry_workloads(self, window_s: float) -> list[dict[str, Any]]:
        self.refresh()
        return list(self.get("/v1/telemetry/workloads", {"window": window_s})["workloads"])

    def admin(self, node: str, page: str, query: Mapping[str, Any] | None = None) -> Any:
        """A read-only Envoy admin page of one proxy (JSON), through the control plane."""
        self.refresh()
        if node in self._unanswered:
            raise self._unanswered[node]
        try:
            return self.client.get(f"/v1/proxies/{node}/admin/{page}", query,
                                   timeout=min(self.timeout, ADMIN_TIMEOUT_S))
        except ControlPlaneUnavailable as exc:
            if not isinstance(exc.__cause__, TimeoutError):
                raise  # the control plane itself is away
            self._unanswered[node] = ControlPlaneUnavailable(
                f"{node} did not answer within {ADMIN_TIMEOUT_S:g}s",
                hint=f"see `tulle diagnose` for why (a frozen Envoy or agent); {exc.hint}")
            raise self._unanswered[node] from exc
