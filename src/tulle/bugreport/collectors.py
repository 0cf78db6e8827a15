"""What a bug report collects: a list of records, each a file in the archive, a function that
produces its content, and a deadline. Per-proxy collectors are made from the proxy list."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tulle import __version__
from tulle.client import ApiClient
from tulle.errors import TulleError
from tulle.local import tail_bytes
from tulle.settings import StatePaths

LOG_TAIL_BYTES = 2 * 1024 * 1024
ENVOY_LOG_LINES = 5000
COMMAND_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Collector:
    path: str  # in the archive
    produce: Callable[[], Any]  # JSON-able data, or str for text files
    deadline_s: float = 20.0


class CollectorError(TulleError):
    """A collector could not produce its file (recorded in the manifest)."""


def standard(client: ApiClient, paths: StatePaths) -> list[Collector]:
    def get(path: str, query: dict[str, Any] | None = None) -> Callable[[], Any]:
        return lambda: client.get(path, query)

    collectors = [
        Collector("version.json", _version),
        Collector("controlplane/status.json", get("/v1/status")),
        Collector("controlplane/controlplane.log",
                  lambda: tail_bytes(paths.log_file, LOG_TAIL_BYTES)),
        Collector("resources.json", lambda: _resources(client)),
        Collector("history.json", get("/v1/history", {"limit": 1000})),
        Collector("workloads.json", get("/v1/workloads")),
        Collector("services.json", get("/v1/services")),
        Collector("proxies/status.json", get("/v1/proxies")),
        Collector("xds/nacks.json", get("/v1/xds/nacks")),
        Collector("xds/stream-events.json", get("/v1/xds/stream-events")),
        Collector("identity/status.json", get("/v1/identity/status")),
    ]
    collectors += [Collector(f"telemetry/{view}.json", get(f"/v1/telemetry/{view}"))
                   for view in ("workloads", "services", "edges")]
    collectors.append(Collector("telemetry/routes.json", lambda: _route_telemetry(client)))
    collectors += [Collector(f"{name}.json", _command(paths, *args),
                             deadline_s=COMMAND_DEADLINE_S)
                   for name, args in (("check", ("check",)),
                                      ("analyze", ("analyze", "--live")),
                                      ("diagnose", ("diagnose",)))]
    return collectors


def replicas(client: ApiClient) -> list[Collector]:
    """On a shared store, what each other replica holds of its own: its status, log, proxies'
    streams and refusals, identity (asked directly, with the replicas' shared API token); and
    how this replica sees them all. None on SQLite (one control plane)."""
    try:
        health = client.get("/v1/health/replicas")
    except TulleError:
        return []  # the standard collectors record a control plane that does not answer
    if health.get("store") != "etcd":
        return []
    collectors = [Collector("replicas/health.json", lambda: health)]
    for row in health.get("replicas", ()):
        if row.get("self") or not row.get("host") or not row.get("apiPort"):
            continue
        other = ApiClient(str(row["host"]), int(row["apiPort"]), client.token, timeout=15.0)
        where = f"replicas/{_safe(str(row['replica']))}"
        collectors += [
            Collector(f"{where}/status.json", _getter(other, "/v1/status")),
            Collector(f"{where}/controlplane.log", _log_of(other)),
            Collector(f"{where}/proxies.json", _getter(other, "/v1/proxies")),
            Collector(f"{where}/xds-nacks.json", _getter(other, "/v1/xds/nacks")),
            Collector(f"{where}/xds-stream-events.json",
                      _getter(other, "/v1/xds/stream-events")),
            Collector(f"{where}/identity.json", _getter(other, "/v1/identity/status")),
        ]
    return collectors


def _log_of(client: ApiClient) -> Callable[[], str]:
    return lambda: str(client.get("/v1/log", {"bytes": LOG_TAIL_BYTES})["text"])


def _getter(client: ApiClient, path: str) -> Callable[[], Any]:
    return lambda: client.get(path)


def _safe(name: str) -> str:
    """A replica's id as one path segment of the archive."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100] or "_"


def per_proxy(client: ApiClient, node: str) -> list[Collector]:
    base = f"/v1/proxies/{node}"
    return [
        Collector(f"proxies/{node}/config_dump.json",
                  lambda: client.get(f"{base}/admin/config_dump", {"include_eds": ""})),
        Collector(f"proxies/{node}/stats.json",
                  lambda: client.get(f"{base}/admin/stats", {"format": "json"})),
        Collector(f"proxies/{node}/clusters.json",
                  lambda: client.get(f"{base}/admin/clusters", {"format": "json"})),
        Collector(f"proxies/{node}/envoy.log",
                  lambda: "\n".join(client.get(f"{base}/logs",
                                               {"tail": ENVOY_LOG_LINES})["lines"]) + "\n"),
    ]


def _version() -> dict[str, Any]:
    return {"version": __version__, "python": sys.version.split()[0],
            "platform": platform.platform()}


def _resources(client: ApiClient) -> dict[str, Any]:
    from tulle.model.kinds import KINDS

    return {info.kind: [item["manifest"] for item in client.get(f"/v1/resources/{info.plural}")]
            for info in KINDS}


def _route_telemetry(client: ApiClient) -> dict[str, Any]:
    """Per-rule rows, service by service (the API answers for one service at a time)."""
    return {f"{s['namespace']}/{s['name']}": client.get(
                "/v1/telemetry/routes", {"namespace": s["namespace"], "name": s["name"]})
            for s in client.get("/v1/services")}


def _command(paths: StatePaths, *args: str) -> Callable[[], Any]:
    """Run another tulle command in its JSON mode, in a child process with a deadline."""
    def run() -> Any:
        command = [sys.executable, "-m", "tulle.cli", "--state-dir", str(paths.root), *args,
                   "-o", "json"]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=COMMAND_DEADLINE_S - 1, stdin=subprocess.DEVNULL,
                                    check=False)
        except subprocess.TimeoutExpired as exc:
            raise CollectorError(f"`tulle {' '.join(args)}` did not finish in "
                                 f"{COMMAND_DEADLINE_S - 1:.0f}s") from exc
        try:
            return {"exitCode": result.returncode, "output": json.loads(result.stdout)}
        except ValueError:
            stderr = result.stderr.strip().splitlines()[-5:]
            raise CollectorError(f"`tulle {' '.join(args)}` exited {result.returncode} "
                                 "without JSON output: " + " / ".join(stderr)) from None

    return run
