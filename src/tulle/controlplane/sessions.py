"""Agent sessions: registration, liveness and readiness of workloads.

An agent registers with ``POST /v1/agent/sessions`` and keeps that response open: the first
line carries its workload record and Envoy bootstrap, then a heartbeat line follows every few
seconds. The workload lives exactly as long as that connection. When the agent dies, even by
SIGKILL, the kernel closes the socket, aiohttp cancels the handler, and the workload's endpoint
leaves every proxy on the next push.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from aiohttp import web
from annotated_types import Ge, Le, Len

from tulle.errors import ConfigError, NotFoundError, Problem, UsageError
from tulle.model.meta import DEFAULT_NAMESPACE, ServiceRef, dns_label_problem, label_problem
from tulle.model.spec_config import SPEC_CONFIG
from tulle.model.workload import UpstreamBind, Workload, WorkloadState
from tulle.registry.registry import Credentials
from tulle.xds.bootstrap import sidecar_bootstrap

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from tulle.controlplane.app import ControlPlane

log = logging.getLogger("tulle.sessions")

HEARTBEAT_S = 5.0
END_SESSION: dict[str, Any] = {"end": True}
DRAIN_SYNC_TIMEOUT_S = 5.0

Port = Annotated[int, Ge(1), Le(65535)]
Token = Annotated[str, Len(16, 256)]


@dataclass(frozen=True)
class UpstreamRequest:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    service: str
    local_port: Port


@dataclass(frozen=True)
class Registration:
    """What an agent sends. Validated strictly: it crosses a trust boundary."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    service: str
    outbound_port: Port
    admin_port: Port
    agent_port: Port
    xds_token: Token
    agent_token: Token
    pid: int
    namespace: str = DEFAULT_NAMESPACE
    version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"
    app_port: Port | None = None
    inbound_port: Port | None = None
    upstreams: tuple[UpstreamRequest, ...] = ()
    xds_protocol: Literal["delta", "sotw"] = "delta"
    service_account: str = ""
    agent_version: str = ""  # tulle's version in the agent (`tulle check --proxy` compares)


@functools.cache
def _registration_adapter() -> TypeAdapter[Registration]:
    """Built once, on first use: building it takes ~20 ms (2,000 registrations took 40 s)."""
    from pydantic import TypeAdapter

    return TypeAdapter(Registration)


def parse_registration(body: bytes) -> tuple[Workload, Credentials]:
    from pydantic import ValidationError

    try:
        reg = _registration_adapter().validate_json(body, strict=True)
    except ValidationError as exc:
        raise ConfigError([Problem(field=".".join(str(p) for p in e["loc"]), message=e["msg"])
                           for e in exc.errors()], message="invalid registration") from exc
    problems = [f"{what} {why}" for what, value in
                (("namespace", reg.namespace), ("service", reg.service), ("name", reg.name),
                 ("service account", reg.service_account or reg.service))
                if (why := dns_label_problem(value)) is not None]
    problems += [why for key, value in reg.labels.items()
                 if (why := label_problem(key, value)) is not None]
    upstreams = []
    for bind in reg.upstreams:
        name, _, namespace = bind.service.partition(".")
        namespace = namespace or reg.namespace
        bad = dns_label_problem(name) or dns_label_problem(namespace)
        if bad:
            problems.append(f"upstream {bind.service}: {bad}")
        upstreams.append(UpstreamBind(ServiceRef(namespace, name), bind.local_port))
    if problems:
        raise UsageError("invalid registration: " + "; ".join(problems))
    workload = Workload(
        name=reg.name, namespace=reg.namespace, service=reg.service, version=reg.version,
        labels=tuple(sorted(reg.labels.items())), address=reg.address, app_port=reg.app_port,
        inbound_port=reg.inbound_port if reg.app_port is not None else None,
        outbound_port=reg.outbound_port, admin_port=reg.admin_port, agent_port=reg.agent_port,
        upstreams=tuple(upstreams), xds_protocol=reg.xds_protocol,
        state=WorkloadState.STARTING, registered_at=time.time(), pid=reg.pid,
        service_account=reg.service_account, agent_version=reg.agent_version[:64])
    return workload, Credentials(xds_token=reg.xds_token, agent_token=reg.agent_token)


async def open_session(cp: ControlPlane, request: web.Request) -> web.StreamResponse:
    workload, credentials = parse_registration(await request.read())
    session = cp.registry.register(workload, credentials)
    registered = cp.registry.get(workload.node_id)
    assert registered is not None
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    first = {
        "session": session,
        "workload": registered.to_dict(),
        "bootstrap": sidecar_bootstrap(registered, cp.endpoint.host, cp.endpoint.xds_port,
                                       credentials.xds_token),
        "identity": cp.identity.enrol(registered),
    }
    channel: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    cp.agent_channels[workload.node_id] = channel
    try:
        await response.write(json.dumps(first).encode() + b"\n")
        while True:
            try:
                message = await asyncio.wait_for(channel.get(), HEARTBEAT_S)
            except TimeoutError:
                message = {"heartbeat": int(time.time())}
            if message is END_SESSION:
                break  # the control plane is stopping; the agent reconnects to the next one
            await response.write(json.dumps(message).encode() + b"\n")
    except (asyncio.CancelledError, ConnectionError):
        if cp.agent_channels.get(workload.node_id) is channel:
            del cp.agent_channels[workload.node_id]
        if not cp.shutting_down:
            cp.registry.session_ended(workload.node_id, session)
        raise
    return response


def new_join_token(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    """For an agent whose certificate can no longer vouch for it (it expired while the host
    slept): the API token that registered it vouches again."""
    node_id = request.match_info["node"]
    workload = cp.registry.get(node_id)
    if workload is None or not cp.registry.is_connected(node_id):
        raise NotFoundError(f"no workload {node_id} with a live session")
    return {"joinToken": cp.identity.tokens.issue(node_id, cp.identity.spiffe_id_of(workload))}


async def set_state(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    node_id = request.match_info["node"]
    body = await _json(request)
    raw_state = body.get("state") if isinstance(body, dict) else None
    try:
        state = WorkloadState(str(raw_state))
    except ValueError as exc:
        raise UsageError(f"unknown workload state {raw_state!r}",
                         hint="one of: " + ", ".join(s.value for s in WorkloadState)) from exc
    cp.registry.set_state(node_id, state)
    result: dict[str, Any] = {"state": state.value}
    if state is WorkloadState.DRAINING:
        # Push the removal now and wait until every proxy has it: only then can the agent stop
        # its application without failing requests that were on their way.
        version = cp.rebuild_now()
        others = [n for n in cp.hub.connected() if n != node_id]
        result["synced"] = await cp.hub.wait_synced(version, DRAIN_SYNC_TIMEOUT_S, others)
        result["meshVersion"] = version
    return result


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise UsageError(f"the request body is not valid JSON: {exc}") from exc
