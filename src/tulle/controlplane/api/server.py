"""The two HTTP applications of the control plane, assembled from the area route tables.

- The API port, for the CLI, agents and (later) the dashboard: every request carries
  ``Authorization: Bearer <token>``, the token generated at first start and stored 0600 in the
  state directory. ``/metrics`` also accepts the read-only metrics token, and nothing else does.
- The agents' TLS identity port: no API token; each signing is authorised by a join token or by
  the client certificate (see :mod:`tulle.controlplane.services.identity`). Agents on other
  hosts also register and report there (:mod:`tulle.controlplane.api.remote`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tulle.controlplane.api import (
    agents,
    history,
    identity,
    joins,
    observe,
    proxies,
    remote,
    replicas,
    resources,
    rollouts,
    whatif,
)
from tulle.controlplane.api.guard import ServerLimits, mark_trusted
from tulle.controlplane.api.routing import bearer_auth, build_app
from tulle.controlplane.api.ui import routes as ui
from tulle.controlplane.api.ui.sessions import UiSessions
from tulle.controlplane.services.analysis import AnalysisService
from tulle.controlplane.services.diagnosis import DiagnosisService
from tulle.controlplane.services.health import HealthService
from tulle.controlplane.services.history import HistoryService
from tulle.controlplane.services.identity import IdentityService
from tulle.controlplane.services.joins import JoinService
from tulle.controlplane.services.mesh import MeshViews
from tulle.controlplane.services.proxies import ProxyService
from tulle.controlplane.services.resources import ResourceService
from tulle.controlplane.services.rollouts import RolloutService
from tulle.controlplane.services.rotation import Rotator
from tulle.controlplane.services.sessions import SessionService
from tulle.controlplane.services.tap import TapService
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.xds.hub import ProxyHub

API_MAX_BODY = 16 * 1024 * 1024  # an apply of many documents
IDENTITY_MAX_BODY = 1024 * 1024  # one CSR; a remote agent's registration or telemetry
# What strangers may hold (see guard.py). The API's callers authenticate with their first
# request and stop counting. Every identity-port connection counts and carries one request;
# each costs about 400 KB of TLS buffers, and an agent's lasts milliseconds.
API_LIMITS = ServerLimits(max_body=API_MAX_BODY)
IDENTITY_LIMITS = ServerLimits(max_body=IDENTITY_MAX_BODY, head_bytes=8 * 1024,
                               max_untrusted=64)


@dataclass(frozen=True)
class Services:
    """Everything the API calls. ``status``, ``metrics`` and ``shutdown`` are the control plane
    process's own."""

    resources: ResourceService
    history: HistoryService
    analysis: AnalysisService
    views: MeshViews
    proxies: ProxyService
    hub: ProxyHub
    sessions: SessionService
    identity: IdentityService
    joins: JoinService
    rotator: Rotator
    telemetry: TelemetryService
    taps: TapService
    diagnosis: DiagnosisService
    health: HealthService
    rollouts: RolloutService
    status: Callable[[], dict[str, Any]]
    metrics: Callable[[], str]
    shutdown: Callable[[], None]
    log_tail: Callable[[int], str]  # the last N bytes of the control plane's log
    ui_sessions: UiSessions = field(default_factory=UiSessions)  # the dashboard's logins


def make_api(s: Services, token: str, metrics_token: str | None) -> web.Application:
    routes = [
        *observe.process_routes(s.status, s.metrics, s.shutdown, s.log_tail),
        *resources.routes(s.resources, s.analysis, s.views),
        *history.routes(s.history),
        *proxies.routes(s.proxies, s.views, s.hub),
        *agents.routes(s.sessions, s.identity, s.telemetry),
        *identity.routes(s.identity, s.rotator, s.sessions),
        *joins.routes(s.joins),
        *observe.telemetry_routes(s.telemetry),
        *observe.tap_routes(s.taps),
        *observe.diagnosis_routes(s.diagnosis),
        *observe.health_routes(s.health, s.telemetry),
        *whatif.routes(s.views),
        *rollouts.routes(s.rollouts),
        *ui.routes(s.ui_sessions, token, s.telemetry, lambda: s.views.mesh().version),
    ]
    extra = {observe.METRICS_ROUTE: metrics_token} if metrics_token else {}
    return build_app(routes, [bearer_auth(token, extra, s.ui_sessions), mark_trusted],
                     limits=API_LIMITS)


def make_identity_api(s: Services) -> web.Application:
    """Signing for every agent; registration and reports for agents on other hosts; what
    replicas ask of each other."""
    return build_app([*identity.signing_routes(s.identity),
                      *remote.routes(s.sessions, s.identity, s.joins, s.telemetry),
                      *replicas.routes(s.identity, s.telemetry, s.rotator, s.status)], [],
                     limits=IDENTITY_LIMITS)
