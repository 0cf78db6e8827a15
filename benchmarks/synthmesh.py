"""Workloads for synthetic proxies, registered the way `tulle run`'s agent registers them.

Each one opens an agent session (``POST /v1/agent/sessions``, kept open: the workload lives as
long as it), gets its first certificate from the identity port with the join token of its
registration (a real key and CSR, a real signature), and reports itself ready. Its proxy is then
admitted on the xDS port like any sidecar: node id and bearer token from its bootstrap.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.adsclient import ProxyIdentity
from tulle.agent.identity import Enrolment, IdentityKeeper, PreparedKey
from tulle.agent.keygen import make_key_and_csr
from tulle.agent.session import ControlPlaneSession
from tulle.security import new_token
from tulle.settings import ControlPlaneEndpoint, StatePaths, read_token

# Ports are only numbers in a registration: nothing binds them (no Envoy, no application).
_PORT_BASES = {"appPort": 10000, "inboundPort": 20000, "outboundPort": 30000,
               "agentPort": 40000}
_MAX_WORKLOADS = 10000  # 5,000 proxies, and the endpoints the benchmark adds


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    service: str
    slot: int  # distinct per workload: its ports derive from it
    protocol: str = "delta"
    app: bool = True  # an application: the workload is an endpoint of its service
    outbound_port: int | None = None  # default: from the slot
    upstreams: tuple[tuple[str, int], ...] = ()  # (service, local port), as --upstream

    def registration(self) -> dict[str, Any]:
        if not 0 <= self.slot < _MAX_WORKLOADS:
            raise ValueError(f"slot {self.slot} out of range")
        ports = {key: base + self.slot for key, base in _PORT_BASES.items()}
        if self.outbound_port is not None:
            ports["outboundPort"] = self.outbound_port
        if not self.app:
            ports["appPort"] = ports["inboundPort"] = None  # type: ignore[assignment]
        return {"name": self.name, "namespace": "default", "service": self.service,
                "version": "", "labels": {}, "address": "127.0.0.1", **ports,
                "upstreams": [{"service": s, "localPort": p} for s, p in self.upstreams],
                "xdsProtocol": self.protocol, "pid": os.getpid(),
                "xdsToken": new_token(), "agentToken": new_token(), "serviceAccount": ""}


@dataclass
class SyntheticWorkload:
    spec: WorkloadSpec
    session: ControlPlaneSession
    proxy: ProxyIdentity

    @property
    def node_id(self) -> str:
        return self.proxy.node_id

    async def ready(self) -> None:
        """What the agent reports once its Envoy and application are up."""
        if await self.session.report("ready") is None:
            raise RuntimeError(f"{self.node_id} could not report itself ready")

    async def close(self) -> None:
        """End the session, as an agent does on its way out: the workload is deregistered."""
        await self.session.close()


async def register(paths: StatePaths, spec: WorkloadSpec, workdir: Path,
                   *, ready: bool = True) -> SyntheticWorkload:
    endpoint = ControlPlaneEndpoint.load(paths)
    session = ControlPlaneSession(endpoint.host, endpoint.api_port, read_token(paths),
                                  spec.registration())
    first = await session.open()
    try:
        enrolment = first["identity"]
        directory = workdir / spec.name
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The agent makes its key in a child process to keep crypto out of its memory; here,
        # with thousands of workloads in one process, in-process is the cheaper way to the
        # same key and CSR.
        csr = make_key_and_csr(directory / "key-1.pem", enrolment["spiffeId"]).decode()
        keeper = IdentityKeeper(session.node_id, directory, Enrolment(
            spiffe_id=enrolment["spiffeId"], trust_domain=enrolment["trustDomain"],
            trust_bundle=enrolment["trustBundle"], host=endpoint.host,
            port=int(enrolment["identityPort"]), join_token=enrolment["joinToken"]),
            reenrol=session.join_token)
        await keeper.obtain(PreparedKey(enrolment["spiffeId"], _done(csr)))
        workload = SyntheticWorkload(spec, session, ProxyIdentity.from_bootstrap(
            first["bootstrap"]))
        if ready:
            await workload.ready()
    except BaseException:
        await session.close()
        raise
    return workload


def _done(value: str) -> asyncio.Task[str]:
    async def constant() -> str:
        return value
    return asyncio.create_task(constant())


async def register_all(paths: StatePaths, specs: Sequence[WorkloadSpec], workdir: Path,
                       concurrency: int = 16) -> list[SyntheticWorkload]:
    limit = asyncio.Semaphore(concurrency)

    async def one(spec: WorkloadSpec) -> SyntheticWorkload:
        async with limit:
            return await register(paths, spec, workdir)

    results = await asyncio.gather(*(one(s) for s in specs), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await close_all([r for r in results if isinstance(r, SyntheticWorkload)])
        raise RuntimeError(f"{len(failures)} of {len(specs)} registrations failed: "
                           f"{failures[0]!r}") from failures[0]
    return [r for r in results if isinstance(r, SyntheticWorkload)]


async def close_all(workloads: Sequence[SyntheticWorkload]) -> None:
    await asyncio.gather(*(w.close() for w in workloads), return_exceptions=True)
