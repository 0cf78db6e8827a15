"""What `tulle check` asks about the replicas of a shared store: does every replica that
announced itself answer, how far apart are their clocks (certificates and telemetry windows
depend on them), and is etcd healthy, with quorum.

Each replica is asked its status on its identity port (controlplane.peerchannel; 2 s each, at
once); the clock
offset is the replica's time against the midpoint of the request here. Each etcd endpoint is
asked for its health and its status (its leader and term)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp

from tulle.controlplane.peerchannel import PeerChannel
from tulle.controlplane.singletons import COMPACTION, ROLLOUTS
from tulle.errors import TulleError
from tulle.store.etcd import EtcdStore

ASK_TIMEOUT_S = 2.0


async def replica_health(store: EtcdStore, replicas: Mapping[str, Mapping[str, Any]],
                         channel: PeerChannel) -> dict[str, Any]:
    """The replicas and etcd as this replica sees them."""
    leaders = asyncio.ensure_future(asyncio.to_thread(_leaders, store))
    answers, etcd = await asyncio.gather(_ask_replicas(store.replica, replicas, channel),
                                         _etcd_health(store))
    # Asked alongside the rest; etcd without its quorum does not say who holds an election.
    done, _ = await asyncio.wait({leaders}, timeout=0.2)
    held = leaders.result() if done else {}
    return {"store": "etcd", "self": store.replica, "replicas": answers, "etcd": etcd,
            "singletons": held}


def _leaders(store: EtcdStore) -> dict[str, str | None]:
    """Which replica runs each singleton job (None: nobody now, or etcd did not answer)."""
    leaders: dict[str, str | None] = {}
    for name in (COMPACTION, ROLLOUTS):
        try:
            leaders[name] = store.leader(name)
        except TulleError:
            leaders[name] = None
    return leaders


async def _ask_replicas(mine: str, replicas: Mapping[str, Mapping[str, Any]],
                        channel: PeerChannel) -> list[dict[str, Any]]:

    async def one(client: aiohttp.ClientSession, replica: str,
                  where: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"replica": replica, "host": where.get("host"),
                               "apiPort": where.get("apiPort"), "self": replica == mine,
                               "agentHost": where.get("agentHost") or where.get("host")}
        if replica == mine:
            return {**row, "answered": True, "clockOffsetSeconds": 0.0}
        url = channel.url(where, "/v1/replicas/status")
        sent = time.time()
        try:
            async with client.get(url, server_hostname=channel.server_name()) as answer:
                body = await answer.json() if answer.status == 200 else None
                if body is None:
                    return {**row, "answered": False, "why": f"HTTP {answer.status}"}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return {**row, "answered": False, "why": type(exc).__name__ + (
                f": {exc}" if str(exc) else "")}
        midpoint = (sent + time.time()) / 2
        offset = float(body["now"]) - midpoint if "now" in body else None
        return {**row, "answered": True, "clockOffsetSeconds": offset}

    async with channel.session(ASK_TIMEOUT_S) as client:
        return list(await asyncio.gather(*(one(client, r, w)
                                           for r, w in sorted(replicas.items()))))


async def _etcd_health(store: EtcdStore) -> dict[str, Any]:
    """Every endpoint asked at once, each given ``ASK_TIMEOUT_S``: a member cut off, or
    without its quorum, must not hold the answer past check's wait."""
    asking = {base: asyncio.ensure_future(asyncio.to_thread(_etcd_endpoint, store, base))
              for base in store.endpoints}
    done, _ = await asyncio.wait(asking.values(), timeout=ASK_TIMEOUT_S + 0.5)
    endpoints = [asking[base].result() if asking[base] in done else
                 {"endpoint": base, "healthy": False,
                  "why": f"did not answer within {ASK_TIMEOUT_S:g}s"} for base in asking]
    members = next((e["members"] for e in endpoints if e.get("members")), [])
    for entry in endpoints:
        entry.pop("members", None)
    return {"members": members, "endpoints": endpoints}


def _etcd_endpoint(store: EtcdStore, base: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"endpoint": base}
    try:
        entry["healthy"] = b'"true"' in _post(store, base, "/health", None)
        status = json.loads(_post(store, base, "/v3/maintenance/status", {}))
        entry["leader"] = status.get("leader")
        entry["member"] = status.get("header", {}).get("member_id")
        listed = json.loads(_post(store, base, "/v3/cluster/member/list", {}))
        entry["members"] = [m.get("name") or m.get("ID") for m in listed.get("members", ())]
    except (OSError, ValueError) as exc:
        entry.update(healthy=False, why=str(exc))
    return entry


def _post(store: EtcdStore, base: str, path: str, body: dict[str, Any] | None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data,
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=ASK_TIMEOUT_S,
                                context=store.tls_context) as answer:
        return bytes(answer.read(1 << 20))

