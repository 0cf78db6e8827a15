"""The CA signs only the identity a workload is entitled to."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mesh import Mesh
from tests.support.pki import bundle
from tests.support.ports import free_port
from tulle.agent import http as agent_http
from tulle.agent.keygen import make_key_and_csr
from tulle.settings import read_token

pytestmark = pytest.mark.envoy

TOKEN_TTL_S = 2.0


@pytest.fixture
def short_token_mesh(tmp_path: Path) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path)
    mesh.up("--join-token-ttl", str(TOKEN_TTL_S))
    try:
        yield mesh
    finally:
        mesh.close()


class FakeAgent:
    """Registers like an agent (holding its session open) but asks for certificates by hand."""

    def __init__(self, mesh: Mesh, name: str, service: str) -> None:
        self.mesh, self.name, self.service = mesh, name, service
        self.loop = asyncio.new_event_loop()
        registration = {
            "name": name, "namespace": "default", "service": service, "outboundPort": free_port(),
            "agentPort": free_port(), "pid": 1,
            "xdsToken": "x" * 32, "agentToken": "a" * 32}
        self.stream = self.loop.run_until_complete(agent_http.open_stream(
            "127.0.0.1", mesh.api_port, "POST", "/v1/agent/sessions", registration,
            headers={"Authorization": f"Bearer {read_token(mesh.paths)}"}))
        assert self.stream.status == 200
        first = self.loop.run_until_complete(anext(self.stream.lines()))
        self.identity: dict[str, Any] = json.loads(first)["identity"]

    def close(self) -> None:
        self.stream.close()
        self.loop.run_until_complete(self.stream._writer.wait_closed())
        self.loop.close()

    def sign(self, spiffe_id: str, token: str | None, tmp: Path,
             client: tuple[Path, Path] | None = None) -> tuple[int, dict[str, Any]]:
        key = tmp / f"{self.name}-{time.monotonic_ns()}.key"
        csr = make_key_and_csr(key, spiffe_id).decode()
        context = ssl.create_default_context(cadata=bundle(self.mesh.state_dir))
        context.check_hostname = False
        if client is not None:
            context.load_cert_chain(*client)
        connection = http.client.HTTPSConnection("127.0.0.1", self.mesh.identity_port,
                                                 context=context, timeout=10)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # No Envoy of a fake agent reads the key: its number only names the file.
        body = json.dumps({"node": f"{self.name}.default", "csr": csr, "keyGeneration": 1})
        try:
            connection.request("POST", "/v1/identity/certificates", body, headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


def test_a_join_token_buys_one_certificate_for_one_identity(short_token_mesh: Mesh,
                                                            tmp_path: Path) -> None:
    mesh = short_token_mesh
    web = FakeAgent(mesh, "web-1", "web")
    try:
        mine = web.identity["spiffeId"]
        assert mine == "spiffe://tulle.local/ns/default/sa/web"
        status, body = web.sign("spiffe://tulle.local/ns/default/sa/books",
                                web.identity["joinToken"], tmp_path)
        assert status == 403, body
        assert "may only be spiffe://tulle.local/ns/default/sa/web" in body["error"]["message"]
        # The token was spent on that attempt: even a correct request cannot reuse it.
        status, body = web.sign(mine, web.identity["joinToken"], tmp_path)
        assert status == 403 and "already used" in body["error"]["message"], body
    finally:
        web.close()

    web = FakeAgent(mesh, "web-2", "web")
    books = FakeAgent(mesh, "books-1", "books")
    try:
        status, body = web.sign(web.identity["spiffeId"], web.identity["joinToken"], tmp_path)
        assert status == 200, body
        chain = tmp_path / "web.crt"
        chain.write_text(body["certificate"])
        key = sorted(tmp_path.glob("web-2-*.key"))[-1]
        # Replaying the token that worked: refused.
        status, body = web.sign(web.identity["spiffeId"], web.identity["joinToken"], tmp_path)
        assert status == 403 and "already used" in body["error"]["message"], body
        # Renewing with web's certificate works for web, and only for web.
        status, body = web.sign(web.identity["spiffeId"], None, tmp_path, client=(chain, key))
        assert status == 200, body
        status, body = books.sign(books.identity["spiffeId"], None, tmp_path,
                                  client=(chain, key))
        assert status == 403 and "not spiffe://tulle.local/ns/default/sa/books" in \
            body["error"]["message"], body
        # Neither token nor certificate: refused.
        status, body = books.sign(books.identity["spiffeId"], None, tmp_path)
        assert status == 403, body
    finally:
        web.close()
        books.close()

    late = FakeAgent(mesh, "web-3", "web")
    try:
        # Not a readiness wait: the token's time to live passing is what expires it.
        time.sleep(TOKEN_TTL_S + 0.5)
        status, body = late.sign(late.identity["spiffeId"], late.identity["joinToken"],
                                 tmp_path)
        assert status == 403 and "expired" in body["error"]["message"], body
    finally:
        late.close()
