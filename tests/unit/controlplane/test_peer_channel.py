"""A replica calls another only if the answer comes from a control plane's certificate: one
the mesh's CA issued to a workload (same CA, a SPIFFE ID of the mesh) is refused."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from tests.unit.controlplane.test_identity_service import service
from tests.unit.identity.certs import BOOKS_ID, csr, p256, uri
from tulle.controlplane.peerchannel import PeerChannel
from tulle.identity.spiffe import control_plane_dns


def _server_context(chain: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return context


async def _ask(channel: PeerChannel, server: ssl.SSLContext) -> str:
    app = web.Application()

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/v1/replicas/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = channel.url({"host": "127.0.0.1", "identityPort": port}, "/v1/replicas/status")
        async with channel.session(5.0) as client, client.get(
                url, server_hostname=channel.server_name()) as answer:
            return str(answer.status)
    finally:
        await runner.cleanup()


def test_only_a_control_planes_certificate_answers_for_a_replica(tmp_path: Path) -> None:
    identity, _ = service(tmp_path)
    identity.refresh_server_identity()
    channel = PeerChannel(tls=identity.peer_context,
                          server_name=lambda: control_plane_dns(identity.ca.trust_domain))
    replica = _server_context(tmp_path / "ca" / "controlplane.crt",
                              tmp_path / "ca" / "controlplane.key")
    assert asyncio.run(_ask(channel, replica)) == "200"

    # A workload of the same mesh (its certificate chains to the same bundle) posing as a
    # replica, say on a hostile network between the hosts.
    key = p256()
    issued = identity.ca.sign(csr([uri(BOOKS_ID)], key), BOOKS_ID, 3600)
    (tmp_path / "w.crt").write_text(issued.chain_pem)
    (tmp_path / "w.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    impostor = _server_context(tmp_path / "w.crt", tmp_path / "w.key")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(_ask(channel, impostor))
