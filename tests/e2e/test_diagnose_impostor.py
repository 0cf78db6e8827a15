"""A SAN mismatch, with a real calling Envoy: an endpoint of books answers with a certificate
the mesh's CA signed, but for another identity.

A consistent mesh cannot produce this (callers accept exactly the identities of registered
instances), so the test registers an instance of books the way an agent does (session, its own
key and certificate) and puts an impostor on its inbound port instead of a sidecar: a TLS
server with a mesh-signed certificate for ``sa/other``. web-1's sidecar must refuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from benchmarks.synthmesh import WorkloadSpec, register

from tests.e2e.test_diagnose_identity import assert_fixable, first_finding, unhealthy_checks
from tests.support.mesh import Mesh, wait_for
from tests.support.pki import Identity, mesh_identity, now
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

IMPOSTOR_ID = "spiffe://tulle.local/ns/default/sa/other"


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


@dataclass(frozen=True)
class _Instance(WorkloadSpec):
    inbound_port: int = 0

    def registration(self) -> dict[str, Any]:
        return {**super().registration(), "inboundPort": self.inbound_port}


@contextlib.contextmanager
def impostor(identity: Identity) -> Iterator[int]:
    """A TLS server on a free port that completes handshakes with ``identity`` and answers
    nothing useful; yields its port."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
        cert.write_text(identity.chain_pem)
        key.write_text(identity.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), \
                    context.wrap_socket(connection, server_side=True) as tls:
                tls.settimeout(1.0)
                tls.recv(4096)
                tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_an_endpoint_with_another_identity_is_refused_and_diagnosed(mesh: Mesh,
                                                                     tmp_path: Path) -> None:
    port = books_and_web(mesh)
    identity = mesh_identity(mesh.state_dir, IMPOSTOR_ID, now() - timedelta(hours=1),
                             now() + timedelta(hours=1))
    with impostor(identity) as impostor_port, event_loop() as loop:
        spec = _Instance("books-x", "books", slot=0,
                         inbound_port=impostor_port)
        workload = asyncio.run_coroutine_threadsafe(
            register(mesh.paths, spec, tmp_path / "impostor"), loop).result(30)
        try:
            mesh.wait_endpoints("web-1", "books", {"books-1", "books-x"})
            # Round robin: about half the calls try the impostor and fail at the handshake
            # (Envoy's default retry then takes them to books-1, so callers may see 200).
            for i in range(20):
                with contextlib.suppress(OSError):
                    _get(port, f"/{i}")

            finding, data = first_finding(mesh, "TUL1054")
            assert finding["subject"] == "service/books.default"
            assert "proxy/web-1.default" in finding["related"]
            evidence = "\n".join(finding["evidence"])
            assert "web-1.default refused" in evidence and "spiffe://tulle.local" in evidence
            assert_fixable(finding, data["exitCode"])
            assert "traffic-edges" in unhealthy_checks(mesh)
        finally:
            asyncio.run_coroutine_threadsafe(workload.close(), loop).result(30)
    wait_for("books-x to leave", lambda: "books-x" not in
             {w["name"] for w in mesh.api.get("/v1/workloads")})


def _get(port: int, path: str) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()
