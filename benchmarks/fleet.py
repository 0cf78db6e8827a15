"""Synthetic proxies in worker processes: ``python -m benchmarks.fleet`` hosts many clients in
one asyncio loop and takes commands as JSON lines on stdin; ``Fleet`` drives a few workers.

Commands (each answered by one JSON line carrying the same ``id``):
- ``connect``: open the streams of the given proxies, all at once; answers when every one holds
  everything it references (or at the timeout), with the moments each got there;
- ``arm`` then ``collect``: note, per proxy, when it ACKs the first response that changes the
  named resource, and hand the moments over once every proxy has;
- ``state``: what given proxies hold, per type (count and version);
- ``disconnect``: close every stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from benchmarks.adsclient import CHANNEL_OPTIONS, ProxyIdentity, ResourceIndex, SyntheticProxy


@dataclass
class _Watch:
    type_url: str
    name: str
    seen: dict[str, float] = field(default_factory=dict)
    everyone: asyncio.Event = field(default_factory=asyncio.Event)


class FleetWorker:
    def __init__(self) -> None:
        self.index = ResourceIndex()
        self.proxies: dict[str, SyntheticProxy] = {}
        self._streams: dict[str, tuple[grpc.aio.Channel, asyncio.Task[None]]] = {}
        self._watch: _Watch | None = None

    def _on_ack(self, proxy: SyntheticProxy, type_url: str, changed: set[str],
                at: float) -> None:
        watch = self._watch
        if watch is not None and type_url == watch.type_url and watch.name in changed:
            watch.seen.setdefault(proxy.identity.node_id, at)
            if len(watch.seen) >= len(self.proxies):
                watch.everyone.set()

    async def connect(self, identities: Sequence[ProxyIdentity], timeout: float
                      ) -> dict[str, Any]:
        started = []
        for identity in identities:
            proxy = SyntheticProxy(identity, self.index, self._on_ack)
            channel = grpc.aio.insecure_channel(identity.target, options=CHANNEL_OPTIONS)
            self.proxies[identity.node_id] = proxy
            self._streams[identity.node_id] = (channel, asyncio.create_task(proxy.run(channel)))
            started.append(proxy)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.completed_at is not None or p.error for p in started):
                break
            await asyncio.sleep(0.01)
        return {"completed": [p.completed_at for p in started if p.completed_at is not None],
                "errors": {p.identity.node_id: p.error or f"{p.identity.protocol}, "
                           f"{p.acks} ACKs, channel {self._channel_state(p)}, waits for: "
                           f"{p.missing()}" for p in started if p.completed_at is None}}

    def _channel_state(self, proxy: SyntheticProxy) -> str:
        channel, _ = self._streams[proxy.identity.node_id]
        return str(channel.get_state(try_to_connect=False).name)

    def arm(self, type_url: str, name: str) -> dict[str, Any]:
        self._watch = _Watch(type_url, name)
        return {"armed": len(self.proxies)}

    async def collect(self, timeout: float) -> dict[str, Any]:
        watch = self._watch
        assert watch is not None, "collect before arm"
        if self.proxies:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.everyone.wait(), timeout)
        self._watch = None
        return {"seen": watch.seen, "missing": sorted(set(self.proxies) - set(watch.seen))}

    def state(self, nodes: Sequence[str]) -> dict[str, Any]:
        return {node: self.proxies[node].state() for node in nodes if node in self.proxies}

    def errors(self) -> dict[str, str]:
        """Proxies whose stream failed, and why."""
        return {n: p.error for n, p in self.proxies.items() if p.error}

    async def disconnect(self) -> dict[str, Any]:
        errors = self.errors()  # before closing: errors from our own close do not count
        streams, self._streams = self._streams, {}
        for channel, _ in streams.values():
            await channel.close()
        await asyncio.gather(*(task for _, task in streams.values()), return_exceptions=True)
        self.proxies = {}
        return {"closed": len(streams), "errors": errors}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "connect":
            identities = [ProxyIdentity(**p) for p in command["proxies"]]
            return await self.connect(identities, float(command["timeout"]))
        if op == "arm":
            return self.arm(command["type_url"], command["name"])
        if op == "collect":
            return await self.collect(float(command["timeout"]))
        if op == "state":
            return self.state(command["nodes"])
        if op == "disconnect":
            return await self.disconnect()
        raise ValueError(f"unknown command {op!r}")


async def _serve() -> None:
    # The load generator shares the machine with the control plane it measures: let the
    # control plane have the CPU first.
    os.nice(5)
    worker = FleetWorker()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def answer(command: dict[str, Any]) -> None:
        try:
            reply = {"id": command["id"], "ok": await worker.handle(command)}
        except Exception as exc:  # reported to the driver, which fails the benchmark
            reply = {"id": command["id"], "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        task = asyncio.create_task(answer(json.loads(line)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await worker.disconnect()


class Fleet:
    """The driver's side: a few worker processes, proxies spread evenly among them."""

    def __init__(self, workers: list[asyncio.subprocess.Process]) -> None:
        self.workers = workers
        self._ids = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._readers = [asyncio.create_task(self._read(w)) for w in workers]

    @classmethod
    async def start(cls, workers: int) -> Fleet:
        processes = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.fleet", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 28) for _ in range(workers)]
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    async def _read(self, worker: asyncio.subprocess.Process) -> None:
        assert worker.stdout is not None
        while line := await worker.stdout.readline():
            reply = json.loads(line)
            future = self._replies.pop(reply["id"], None)
            if future is not None and not future.done():
                if "error" in reply:
                    future.set_exception(RuntimeError(f"fleet worker: {reply['error']}"))
                else:
                    future.set_result(reply["ok"])
        for future in self._replies.values():
            if not future.done():
                future.set_exception(RuntimeError("a fleet worker exited"))

    async def _ask(self, worker: int, op: str, **args: Any) -> dict[str, Any]:
        self._ids += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._ids] = future
        stdin = self.workers[worker].stdin
        assert stdin is not None
        stdin.write(json.dumps({"id": self._ids, "op": op, **args}).encode() + b"\n")
        await stdin.drain()
        return await future

    async def _all(self, op: str, **args: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._ask(i, op, **args)
                                           for i in range(len(self.workers)))))

    async def connect(self, identities: Sequence[ProxyIdentity], timeout: float
                      ) -> list[float]:
        """Connect every proxy at once; the moments each held everything. Fails if any
        did not get there within ``timeout``."""
        shares: list[list[dict[str, Any]]] = [[] for _ in self.workers]
        for i, identity in enumerate(identities):
            shares[i // 2 % len(self.workers)].append(identity.to_dict())  # pairs: both kinds
        replies = await asyncio.gather(*(self._ask(i, "connect", proxies=share, timeout=timeout)
                                         for i, share in enumerate(shares) if share))
        errors = {n: e for r in replies for n, e in r["errors"].items()}
        if errors:
            sample = dict(list(errors.items())[:5])
            raise RuntimeError(f"{len(errors)} synthetic proxies did not get their whole "
                               f"config in {timeout:g} s, e.g. {sample}")
        return [t for r in replies for t in r["completed"]]

    async def arm(self, type_url: str, name: str) -> None:
        await self._all("arm", type_url=type_url, name=name)

    async def collect(self, timeout: float) -> dict[str, float]:
        """Per proxy, when it ACKed the change armed for. Fails if one never did."""
        replies = await self._all("collect", timeout=timeout)
        missing = [n for r in replies for n in r["missing"]]
        if missing:
            raise RuntimeError(f"{len(missing)} proxies never ACKed the change in {timeout:g} "
                               f"s, e.g. {missing[:5]}")
        return {n: t for r in replies for n, t in r["seen"].items()}

    async def state(self, nodes: Sequence[str]) -> dict[str, dict[str, Any]]:
        replies = await self._all("state", nodes=list(nodes))
        return {n: s for r in replies for n, s in r.items()}

    async def disconnect(self) -> None:
        replies = await self._all("disconnect")
        errors = {n: e for r in replies for n, e in r["errors"].items()}
        if errors:
            raise RuntimeError(f"synthetic proxies lost their streams: "
                               f"{dict(list(errors.items())[:5])}")

    async def close(self) -> None:
        for worker in self.workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except TimeoutError:
                worker.kill()
                await worker.wait()
        for reader in self._readers:
            reader.cancel()


if __name__ == "__main__":
    asyncio.run(_serve())
