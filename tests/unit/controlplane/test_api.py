"""The HTTP layer: one style of route (every handler a coroutine), authentication before any
body is read, bounded bodies, and 4xx answers that say what to fix."""

from __future__ import annotations

import asyncio
import inspect
import re
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp.test_utils import TestClient, TestServer

from tulle.controlplane.api import routing
from tulle.controlplane.api.server import API_MAX_BODY, make_api, make_identity_api
from tulle.controlplane.app import ControlPlane
from tulle.settings import ControlPlaneEndpoint, StatePaths

T = TypeVar("T")
AUTH = {"Authorization": "Bearer api-token"}
JSON = {"Content-Type": "application/json"}


def in_loop(tmp_path: Path, body: Callable[[ControlPlane, TestClient], Awaitable[T]]) -> T:
    async def main() -> T:
        paths = StatePaths(tmp_path / "state")
        paths.ensure()
        cp = ControlPlane(paths, ControlPlaneEndpoint(api_port=1, xds_port=2), "api-token")
        try:
            async with TestClient(TestServer(make_api(cp.services, cp.token, None))) as client:
                return await body(cp, client)
        finally:
            cp.store.close()
    return asyncio.run(main())


def test_every_route_is_a_coroutine_and_registering_them_warns_nothing(tmp_path: Path) -> None:
    async def body(cp: ControlPlane, client: TestClient) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            apps = [make_api(cp.services, cp.token, None), make_identity_api(cp.services)]
        for app in apps:
            seen = set()
            for route in app.router.routes():
                assert inspect.iscoroutinefunction(route.handler), route
                key = (route.method, route.resource.canonical if route.resource else "")
                assert key not in seen, f"{key} registered twice"
                seen.add(key)

    in_loop(tmp_path, body)


def test_handlers_read_bodies_only_through_read_body() -> None:
    """read_body bounds a body in size and time: a handler reading one itself would not be."""
    api = Path(routing.__file__).parent
    readers = re.compile(r"request\.(read|text|json|post|content|multipart)\b")
    offenders = [f"{path.name}:{number}" for path in sorted(api.glob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if readers.search(line) and not (path.name == "routing.py"
                                                   and "return await request.read()" in line)]
    assert offenders == []


def test_authentication_comes_before_the_body(tmp_path: Path) -> None:
    async def body(cp: ControlPlane, client: TestClient) -> list[int]:
        oversized = b"x" * (API_MAX_BODY + 1)
        statuses = []
        for headers in ({}, {"Authorization": "Bearer wrong"}, AUTH):
            response = await client.post("/v1/resources/apply", data=oversized,
                                         headers={**headers, **JSON})
            statuses.append(response.status)
        return statuses

    # Unauthenticated: refused before anything is read (not 413, which needs a read).
    assert in_loop(tmp_path, body) == [401, 401, 413]


def test_bad_bodies_get_a_4xx_that_says_what_to_send(tmp_path: Path) -> None:
    async def body(cp: ControlPlane, client: TestClient) -> list[tuple[int, str, str]]:
        out = []
        for path, data in (("/v1/resources/apply", b"{not json"),
                           ("/v1/resources/apply", b"[1, 2]"),
                           ("/v1/rollback", b'{"revision": "two"}'),
                           ("/v1/revert", b'{"revision": true}'),
                           ("/v1/identity/rotate", b""),
                           ("/v1/agent/workloads/x.default/state", b'{"state": "sleepy"}')):
            response = await client.post(path, data=data, headers={**AUTH, **JSON})
            error = (await response.json())["error"]
            out.append((response.status, error["message"], error.get("hint") or ""))
        return out

    answers = in_loop(tmp_path, body)
    assert [status for status, _, _ in answers] == [400, 400, 400, 400, 400, 400]
    assert "not valid JSON" in answers[0][1] and "documents" in answers[0][2]
    assert "JSON object" in answers[1][1]
    assert "whole number" in answers[2][1]
    assert "whole number" in answers[3][1] and "tulle history" in answers[3][2]
    assert "needs a JSON body" in answers[4][1]
    assert "unknown workload state" in answers[5][1]


def test_bad_queries_get_a_400(tmp_path: Path) -> None:
    async def body(cp: ControlPlane, client: TestClient) -> list[int]:
        out = []
        for path in ("/v1/history?limit=lots", "/v1/telemetry/services?window=soon",
                     "/v1/xds/sync?version=latest", "/v1/proxies/x.default/logs?tail=-1",
                     "/v1/diagnose?window=2000"):
            out.append((await client.get(path, headers=AUTH)).status)
        return out

    assert in_loop(tmp_path, body) == [400, 400, 400, 400, 400]


def test_the_identity_port_bounds_and_checks_its_body(tmp_path: Path) -> None:
    async def main() -> list[int]:
        paths = StatePaths(tmp_path / "state")
        paths.ensure()
        cp = ControlPlane(paths, ControlPlaneEndpoint(api_port=1, xds_port=2), "api-token")
        try:
            async with TestClient(TestServer(make_identity_api(cp.services))) as client:
                statuses = []
                for data in (b"x" * (1025 * 1024), b"[]", b'{"csr": "x"}'):
                    response = await client.post("/v1/identity/certificates", data=data,
                                                 headers=JSON)
                    statuses.append(response.status)
                return statuses
        finally:
            cp.store.close()

    # Too large is refused before anything; then who asks comes before what is asked.
    assert asyncio.run(main()) == [413, 403, 403]


def test_the_log_tail_is_bounded_and_needs_the_token(tmp_path: Path) -> None:
    async def body(cp: ControlPlane, client: TestClient) -> None:
        cp.paths.log_file.write_text("early line\n" + "x" * 100 + "\nlast line\n")
        refused = await client.get("/v1/log")
        assert refused.status == 401
        answer = await client.get("/v1/log", params={"bytes": "10"}, headers=AUTH)
        assert answer.status == 200 and (await answer.json()) == {"text": "last line\n"}
        whole = await (await client.get("/v1/log", headers=AUTH)).json()
        assert whole["text"].startswith("early line")
        for bad in ("0", "-5", str(64 * 2**20), "ten"):
            answer = await client.get("/v1/log", params={"bytes": bad}, headers=AUTH)
            assert answer.status == 400, bad

    in_loop(tmp_path, body)
