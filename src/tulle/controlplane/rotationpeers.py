"""The other replicas, as a CA rotation on a shared store needs them (services/rotation.py,
RotationPeers): the election ``ca-rotation``, held under this replica's etcd lease while it
rotates, and each stage's wait for the other replicas' proxies.

Each other replica is asked on its identity port (controlplane.peerchannel) to answer once its
own proxies hold the stage: ``POST /v1/replicas/ca-sync``, answered by Rotator.follow there.
A replica that does not answer in time is named, and the stage fails (it is resumable).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from tulle.controlplane.peerchannel import PeerChannel
from tulle.errors import TulleError
from tulle.store.etcd import EtcdStore

ELECTION = "ca-rotation"


class ReplicaRotationPeers:
    def __init__(self, store: EtcdStore, channel: PeerChannel) -> None:
        self._store = store
        self._channel = channel
        self._fence = 0  # the election's revision while this replica holds it

    async def claim(self) -> str | None:
        self._fence = await asyncio.to_thread(self._store.campaign, ELECTION)
        if self._fence:
            return None
        holder = await asyncio.to_thread(self._store.leader, ELECTION)
        return holder or "another replica"

    async def still_holds(self) -> bool:
        try:
            return bool(self._fence) and await asyncio.to_thread(
                self._store.leader, ELECTION) == self._store.replica
        except TulleError:
            return self._store.lease_left() > 1.0

    async def release(self) -> None:
        if self._fence:
            with contextlib.suppress(TulleError):
                await asyncio.to_thread(self._store.resign, ELECTION, self._fence)
            self._fence = 0

    async def synced(self, bundle: str, issuer: str | None, timeout_s: float
                     ) -> tuple[int, list[str]]:
        # Read now, not as last refreshed: a replica that started a moment ago counts too.
        try:
            others = {r: where for r, where in (await asyncio.to_thread(
                self._store.replicas)).items() if r != self._store.replica}
        except TulleError as exc:
            return 0, [f"the other replicas cannot be listed: {exc.message}"]
        if not others:
            return 0, []
        body = {"bundle": bundle, "issuer": issuer, "timeoutS": timeout_s}
        async def one(client: aiohttp.ClientSession, replica: str,
                      where: Mapping[str, Any]) -> str | None:
            url = self._channel.url(where, "/v1/replicas/ca-sync")
            try:
                async with client.post(url, json=body,
                                       server_hostname=self._channel.server_name()) as answer:
                    found = await answer.json() if answer.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return f"replica {replica} did not answer ({type(exc).__name__})"
            if not isinstance(found, dict):
                return f"replica {replica} answered HTTP {answer.status}"
            why = found.get("lagging")
            return f"replica {replica}: {why}" if why else None

        async with self._channel.session(timeout_s + 5.0) as client:
            answers = await asyncio.gather(*(one(client, r, w) for r, w in others.items()))
        return len(others), [a for a in answers if a is not None]
