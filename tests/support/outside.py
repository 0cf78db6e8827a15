"""Hosts outside the mesh, for egress tests: local HTTP and HTTPS servers that record what
reached them, a CA and a server certificate for a name, and a client that speaks to a
sidecar's outbound port the way an application with HTTP_PROXY does."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.http import Reply


@dataclass(frozen=True)
class ServerCert:
    ca_pem: str
    chain_pem: str
    key_pem: str


def server_cert(dns_name: str) -> ServerCert:
    """A CA of its own, and a certificate for ``dns_name`` that it signed."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    end = start + dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"outside CA for {dns_name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return ServerCert(pem(ca), pem(leaf), key_pem)


@dataclass
class Outside:
    """A server outside the mesh: every request it got, as {path, host, tls}."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def outside_server(cert: ServerCert | None = None) -> Iterator[Outside]:
    """An HTTP server on a free loopback port (HTTPS with ``cert``) that answers 200 with
    what it saw."""
    outside = Outside(0)
    tls = cert is not None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen = {"path": self.path, "host": self.headers.get("host"), "tls": tls,
                    "egress_header": self.headers.get("x-tulle-egress-authority")}
            outside.seen.append(seen)
            body = json.dumps({"outside": True, **seen}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            chain, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            chain.write_text(cert.chain_pem)
            key.write_text(cert.key_pem)
            context.load_cert_chain(chain, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    outside.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield outside
    finally:
        server.shutdown()
        server.server_close()


def _reply(response: http.client.HTTPResponse) -> Reply:
    raw = response.read()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body, 0.0)


def via_proxy(outbound_port: int, url_host: str, path: str = "/") -> Reply:
    """``GET http://url_host/path`` sent to a sidecar's outbound port, as through HTTP_PROXY."""
    connection = http.client.HTTPConnection("127.0.0.1", outbound_port, timeout=10)
    try:
        connection.request("GET", f"http://{url_host}{path}", headers={"Host": url_host})
        return _reply(connection.getresponse())
    finally:
        connection.close()


def via_connect(outbound_port: int, host: str, port: int, path: str = "/",
                ca_pem: str | None = None) -> Reply:
    """``CONNECT host:port`` through the sidecar's outbound port, then GET ``path`` inside
    the tunnel: over TLS verified against ``ca_pem`` (as an https:// URL), else plain.
    A refused CONNECT raises OSError whose text holds the proxy's status line."""
    if ca_pem is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", outbound_port, timeout=10)
    else:
        context = ssl.create_default_context(cadata=ca_pem)
        connection = http.client.HTTPSConnection("127.0.0.1", outbound_port, timeout=10,
                                                 context=context)
    connection.set_tunnel(host, port)
    try:
        connection.request("GET", path, headers={"Host": host})
        return _reply(connection.getresponse())
    finally:
        connection.close()
