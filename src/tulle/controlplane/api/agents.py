"""Routes the workloads' agents use (authenticated with the API token).

    POST /v1/agent/sessions                          register; the response stays open (NDJSON):
                                                     the first line carries the workload record,
                                                     Envoy's bootstrap and the identity enrolment,
                                                     then control messages and heartbeats
    POST /v1/agent/workloads/{node}/state            {"state": "ready" | "draining" | ...}
    POST /v1/agent/workloads/{node}/join-token       a new join token (the session vouches)
    POST /v1/agent/workloads/{node}/telemetry        {"series": [{"k": ..., "v": {...}}]}

A registration crosses a trust boundary: it is validated strictly here, before anything else
sees it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from aiohttp import web
from annotated_types import Ge, Le, Len

from tulle.controlplane.api.routing import Route, json_bytes, json_object, json_response
from tulle.controlplane.services.identity import IdentityService
from tulle.controlplane.services.sessions import SessionService
from tulle.controlplane.services.telemetry import Series, TelemetryService
from tulle.errors import ConfigError, Problem, UsageError
from tulle.model.gateway import GatewayBinding
from tulle.model.meta import DEFAULT_NAMESPACE, ServiceRef, dns_label_problem, label_problem
from tulle.model.spec_config import SPEC_CONFIG
from tulle.model.workload import UpstreamBind, Workload, WorkloadState
from tulle.registry.registry import Credentials
from tulle.telemetry.schema import SeriesKey

if TYPE_CHECKING:
    from pydantic import TypeAdapter


def routes(sessions: SessionService, identity: IdentityService,
           telemetry: TelemetryService) -> list[Route]:
    async def open_session(request: web.Request) -> web.StreamResponse:
        workload, credentials = parse_registration(await json_bytes(request))
        return await stream_session(request, sessions, workload, credentials)

    async def set_state(request: web.Request) -> web.StreamResponse:
        return await state_response(request, sessions, request.match_info["node"])

    async def join_token(request: web.Request) -> web.StreamResponse:
        return json_response({"joinToken": identity.join_token_for(request.match_info["node"])})

    async def report(request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        telemetry.receive(node, parse_report(node, await json_bytes(request)))
        return json_response({"ok": True})

    return [
        Route("POST", "/v1/agent/sessions", open_session),
        Route("POST", "/v1/agent/workloads/{node}/state", set_state),
        Route("POST", "/v1/agent/workloads/{node}/join-token", join_token),
        Route("POST", "/v1/agent/workloads/{node}/telemetry", report),
    ]


async def state_response(request: web.Request, sessions: SessionService, node: str
                         ) -> web.StreamResponse:
    """Set ``node``'s state from the request's body; the answer says whether proxies synced."""
    body = await json_object(request, example='{"state": "ready"}')
    change = await sessions.set_state(node, body.get("state"),
                                      str(body.get("reason") or "")[:500])
    result: dict[str, Any] = {"state": change.state.value}
    if change.synced is not None:
        result["synced"] = change.synced
        result["meshVersion"] = change.mesh_version
    return json_response(result)


async def stream_session(request: web.Request, sessions: SessionService, workload: Workload,
                         credentials: Credentials, certificate: bytes | None = None
                         ) -> web.StreamResponse:
    """Register ``workload`` and hold its session open (NDJSON) until either side ends it.
    ``certificate``: what vouches for an agent on another host that comes back."""
    session = sessions.open(workload, credentials, certificate)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        await response.prepare(request)
        await _send(response, session.greeting)
        while (message := await session.next_message()) is not None:
            await _send(response, message)
    except (asyncio.CancelledError, ConnectionError):
        session.ended()
        raise
    return response


async def _send(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(json.dumps(message).encode() + b"\n")


def parse_report(node_id: str, body: bytes) -> Series:
    try:
        data = json.loads(body)
        return [(SeriesKey.from_wire(item), _values(item["v"])) for item in data["series"]]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UsageError(f"malformed telemetry report from {node_id}: "
                         f"{type(exc).__name__}: {exc}"[:300]) from exc


def _values(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise TypeError("values must be an object")
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}


# -- registration ------------------------------------------------------------------------------

Port = Annotated[int, Ge(1), Le(65535)]
Token = Annotated[str, Len(16, 256)]


@dataclass(frozen=True)
class UpstreamRequest:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    service: str
    local_port: Port


@dataclass(frozen=True)
class GatewayRequest:
    """`tulle gateway run`: the port it serves, where, and its TLS files on its own host."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    port: Port
    listen_address: Annotated[str, Len(1, 64)] = "0.0.0.0"
    tls_cert: Annotated[str, Len(0, 1024)] = ""
    tls_key: Annotated[str, Len(0, 1024)] = ""


@dataclass(frozen=True)
class Registration:
    """What an agent sends. Validated strictly: it crosses a trust boundary."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    service: str
    outbound_port: Port
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
    key_dir: str = ""  # an agent on another host: its identity directory there
    gateway: GatewayRequest | None = None  # an ingress gateway, not a service's instance


@functools.cache
def _registration_adapter() -> TypeAdapter[Registration]:
    """Built once, on first use: building it takes ~20 ms (2,000 registrations took 40 s)."""
    from pydantic import TypeAdapter

    return TypeAdapter(Registration)


def parse_registration(body: bytes, *, remote: bool = False) -> tuple[Workload, Credentials]:
    """``remote``: an agent on another host, which names its identity directory (``keyDir``,
    absolute) and the address its host is reached at; this host's agents name neither."""
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
    problems += _placement_problems(reg, remote)
    gateway = None
    if reg.gateway is not None:
        problems += _gateway_problems(reg)
        gateway = GatewayBinding(reg.gateway.port, reg.gateway.listen_address,
                                 reg.gateway.tls_cert, reg.gateway.tls_key)
    if problems:
        raise UsageError("invalid registration: " + "; ".join(problems))
    workload = Workload(
        name=reg.name, namespace=reg.namespace, service=reg.service, version=reg.version,
        labels=tuple(sorted(reg.labels.items())), address=reg.address, app_port=reg.app_port,
        inbound_port=reg.inbound_port if reg.app_port is not None else None,
        outbound_port=reg.outbound_port, agent_port=reg.agent_port,
        upstreams=tuple(upstreams), xds_protocol=reg.xds_protocol,
        state=WorkloadState.STARTING, registered_at=time.time(), pid=reg.pid,
        service_account=reg.service_account, agent_version=reg.agent_version[:64],
        key_dir=reg.key_dir if remote else "", gateway=gateway)
    return workload, Credentials(xds_token=reg.xds_token, agent_token=reg.agent_token)


def _gateway_problems(reg: Registration) -> list[str]:
    assert reg.gateway is not None
    gateway = reg.gateway
    problems = []
    if reg.app_port is not None or reg.upstreams:
        problems.append("a gateway runs no application and binds no --upstream")
    try:
        ipaddress.ip_address(gateway.listen_address)
    except ValueError:
        problems.append(f"gateway listen address {gateway.listen_address[:64]!r} is not an "
                        "IP address")
    if bool(gateway.tls_cert) != bool(gateway.tls_key):
        problems.append("a gateway's TLS needs both a certificate and a key")
    for path in (gateway.tls_cert, gateway.tls_key):
        parsed = PurePosixPath(path)
        if path and (not parsed.is_absolute() or ".." in parsed.parts):
            problems.append(f"gateway TLS file {path[:100]!r} must be an absolute path "
                            "without '..'")
    return problems


def _placement_problems(reg: Registration, remote: bool) -> list[str]:
    if not remote:
        return ["keyDir is only for agents on other hosts (they register on the identity "
                "port)"] if reg.key_dir else []
    problems = []
    path = PurePosixPath(reg.key_dir)
    if not path.is_absolute() or ".." in path.parts or len(reg.key_dir) > 1024:
        problems.append(f"keyDir {reg.key_dir[:100]!r} must be an absolute path without '..'")
    try:
        address = ipaddress.ip_address(reg.address)
    except ValueError:
        problems.append(f"address {reg.address[:100]!r} is not an IP address")
    else:
        if address.is_unspecified or address.is_multicast:
            problems.append(f"address {reg.address} is not one other hosts can reach")
    return problems
