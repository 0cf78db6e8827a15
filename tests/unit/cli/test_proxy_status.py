"""proxy-status's view and rendering, from the tracker's own status data classified as the
control plane does it, through the API's JSON."""

from __future__ import annotations

import pytest

from tulle.cli.cmd_proxy_status import proxy_view, render_detail, render_summary
from tulle.cli.proxies import resolve
from tulle.errors import NotFoundError
from tulle.xds import types
from tulle.xds.sync import DEFAULT_STALE_AFTER_S, Nack, ProxySync, view_of
from tulle.xds.tracker import ProxyStatus

NOW = 1_800_000_000.0
MESSAGE = "Error adding/updating listener(s) outbound: unknown filter\nsecond line"


def _status() -> ProxyStatus:
    status = ProxyStatus("web-1.default", "delta", connected_at=NOW - 3600)
    synced = status.of(types.CLUSTER)
    synced.sent_version = synced.acked_version = "c1"
    synced.sent_nonce = synced.answered_nonce = "1"
    synced.sent_at = NOW - 120
    return status


def served(status: ProxyStatus, at: float = NOW,
           stale_after: float = DEFAULT_STALE_AFTER_S) -> ProxySync:
    """What the CLI gets: classified by the control plane at ``at``, through the JSON edge."""
    return ProxySync.from_json(view_of(status, at, stale_after).to_json())


def test_synced_proxy_is_healthy() -> None:
    view = proxy_view(served(_status()), NOW)
    assert view["healthy"]
    assert view["types"]["CDS"]["state"] == "SYNCED"
    assert view["types"]["RDS"]["state"] == "NOT SENT"
    assert view["connectedSeconds"] == 3600
    assert "SYNCED" in render_summary([view]) and "1h" in render_summary([view])


def test_nacked_shows_envoys_full_message_and_fails() -> None:
    status = _status()
    listeners = status.of(types.LISTENER)
    listeners.sent_version, listeners.sent_nonce, listeners.answered_nonce = "l2", "2", "2"
    listeners.acked_version = "l1"
    listeners.sent_at = NOW - 5
    listeners.last_nack = Nack("web-1.default", types.LISTENER, "2", "l2", "l1", MESSAGE, NOW)
    view = proxy_view(served(status), NOW)
    assert not view["healthy"]
    assert view["types"]["LDS"]["state"] == "NACKED"
    assert view["types"]["LDS"]["nackMessage"] == MESSAGE
    detail = render_detail(view)
    assert "LDS NACKED by Envoy:" in detail
    assert "unknown filter" in detail and "second line" in detail
    assert "l2" in detail and "l1" in detail


def test_a_young_push_is_pending_and_stale_only_after_ten_seconds() -> None:
    status = _status()
    routes = status.of(types.ROUTE)
    routes.sent_version, routes.sent_nonce, routes.sent_at = "r1", "3", NOW - 4
    fresh = proxy_view(served(status), NOW)
    assert fresh["types"]["RDS"]["state"] == "PENDING"
    assert fresh["types"]["RDS"]["waitingSeconds"] == 4
    assert fresh["types"]["RDS"]["staleSeconds"] is None
    assert fresh["healthy"] and fresh["state"] == "PENDING"
    assert "PENDING (4s)" in render_summary([fresh])
    late = proxy_view(served(status, NOW + 30), NOW + 30)
    assert late["types"]["RDS"]["state"] == "STALE"
    assert late["types"]["RDS"]["staleSeconds"] == 34
    assert not late["healthy"]
    assert "STALE (34s)" in render_summary([late])


def test_stale_is_judged_by_the_control_planes_threshold() -> None:
    status = _status()
    routes = status.of(types.ROUTE)
    routes.sent_version, routes.sent_nonce, routes.sent_at = "r1", "3", NOW - 4
    assert proxy_view(served(status), NOW)["healthy"]
    strict = proxy_view(served(status, stale_after=2.0), NOW)
    assert not strict["healthy"]
    assert strict["types"]["RDS"]["staleAfterSeconds"] == 2.0


def test_no_proxies() -> None:
    assert render_summary([]) == "No proxies connected."


def test_proxy_names_resolve_or_list_the_known_ones() -> None:
    known = ["books-1.default", "web-1.shop"]
    assert resolve("web-1", "shop", known) == "web-1.shop"
    assert resolve("books-1.default", "shop", known) == "books-1.default"
    with pytest.raises(NotFoundError) as caught:
        resolve("web-1", "default", known)
    assert "web-1.default" in caught.value.message
    assert "books-1.default, web-1.shop" in (caught.value.hint or "")
