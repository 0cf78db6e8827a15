"""Just enough HTTP/1.1 for the agent, on asyncio streams.

The agent runs beside every workload, so it avoids HTTP libraries that cost more memory than
the agent itself. It needs three things: JSON requests to the control plane, one long-lived
streaming response (its session), and a tiny server for the control plane to read Envoy's admin
pages through.

The server is reachable by every local user, so it is bounded (:class:`ServerLimits`): it checks
a request's head (credentials, declared body) before reading any body byte, caps the head and
the body, gives each a deadline, and counts connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tulle.agent.http")

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class HttpError(Exception):
    """The peer spoke broken HTTP, or closed the connection early."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    query: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def _encode_request(method: str, host: str, port: int | None, path: str,
                    headers: Mapping[str, str] | None, body: bytes | None) -> bytes:
    authority = host if port is None else f"{host}:{port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    payload = body or b""
    if body is not None or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise HttpError("connection closed before the headers ended") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError("headers too large") from exc
    first, *rest = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in rest:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return first, headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return b"".join([chunk async for chunk in _chunks(reader)])
    length = headers.get("content-length")
    if length is not None:
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise HttpError(f"body of {size} bytes is too large")
        return await reader.readexactly(size)
    return await reader.read(MAX_BODY_BYTES)


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise HttpError("connection closed inside a chunked body")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        chunk = await reader.readexactly(size)
        await reader.readexactly(2)
        yield chunk


async def request(host: str, port: int, method: str, path: str, *,
                  headers: Mapping[str, str] | None = None, body: bytes | None = None,
                  timeout: float = 10.0, tls: ssl.SSLContext | None = None,
                  peer_uri: str | None = None) -> Response:
    """With ``tls``, the exchange is over TLS; ``peer_uri`` is then the URI SAN (SPIFFE ID)
    the server's certificate must carry."""
    async def exchange() -> Response:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES,
                                                       ssl=tls)
        try:
            if tls is not None and peer_uri is not None:
                names = (writer.get_extra_info("peercert") or {}).get("subjectAltName", ())
                if ("URI", peer_uri) not in names:
                    raise HttpError(f"the server is not {peer_uri}")
            return await _round_trip(reader, writer,
                                     _encode_request(method, host, port, path, headers, body))
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      request: bytes) -> Response:
    """Send one request and read its response."""
    writer.write(request)
    await writer.drain()
    status_line, response_headers = await _read_head(reader)
    status = int(status_line.split(" ", 2)[1])
    return Response(status, response_headers, await _read_body(reader, response_headers))


async def request_unix(socket_path: str, method: str, path: str, *,
                       headers: Mapping[str, str] | None = None, body: bytes | None = None,
                       timeout: float = 10.0) -> Response:
    """:func:`request` over a Unix socket: how the agent reaches Envoy's admin interface."""
    async def exchange() -> Response:
        reader, writer = await asyncio.open_unix_connection(socket_path,
                                                            limit=MAX_HEADER_BYTES)
        try:
            return await _round_trip(reader, writer, _encode_request(
                method, "localhost", None, path, headers, body))
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


async def request_json(host: str, port: int, method: str, path: str, payload: Any, *,
                       headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                       tls: ssl.SSLContext | None = None,
                       peer_uri: str | None = None) -> Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return await request(host, port, method, path, headers=all_headers,
                         body=json.dumps(payload).encode(), timeout=timeout, tls=tls,
                         peer_uri=peer_uri)


@dataclass
class LineStream:
    """A streaming response read line by line (NDJSON); closing it ends the exchange."""

    status: int
    headers: Mapping[str, str]
    _reader: asyncio.StreamReader
    _writer: asyncio.StreamWriter
    _buffer: bytes = b""

    async def lines(self) -> AsyncIterator[bytes]:
        chunks = (_chunks(self._reader)
                  if self.headers.get("transfer-encoding", "").lower() == "chunked"
                  else _raw(self._reader))
        async for chunk in chunks:
            self._buffer += chunk
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                yield line

    async def read_all(self) -> bytes:
        return await _read_body(self._reader, self.headers)

    def close(self) -> None:
        self._writer.close()


async def _raw(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(65536):
        yield chunk


async def open_stream(host: str, port: int, method: str, path: str, payload: Any, *,
                      headers: Mapping[str, str] | None = None,
                      timeout: float = 10.0, tls: ssl.SSLContext | None = None,
                      peer_uri: str | None = None) -> LineStream:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES, ssl=tls), timeout)
    try:
        if tls is not None and peer_uri is not None:
            names = (writer.get_extra_info("peercert") or {}).get("subjectAltName", ())
            if ("URI", peer_uri) not in names:
                raise HttpError(f"the server is not {peer_uri}")
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        writer.write(_encode_request(method, host, port, path, all_headers,
                                     json.dumps(payload).encode()))
        await writer.drain()
        status_line, response_headers = await asyncio.wait_for(_read_head(reader), timeout)
    except BaseException:
        writer.close()
        raise
    return LineStream(int(status_line.split(" ", 2)[1]), response_headers, reader, writer)


Handler = Callable[[Request], Awaitable[Response]]
# Sees each request's head before any body byte is read (``body`` is still empty): a Response
# refuses the request, None lets the server read the body and call the handler.
Admit = Callable[[Request], Response | None]


@dataclass(frozen=True)
class ServerLimits:
    """What one connection to :func:`serve` may cost. A caller that ``admit`` refuses never
    gets a body byte read: it can hold at most ``head_bytes`` (twice that buffered) for
    ``head_timeout_s``, on at most ``max_connections`` connections. The defaults fit the
    agent, whose requests are a request line, a few headers and a small JSON body."""

    head_bytes: int = 8 * 1024
    body_bytes: int = 16 * 1024
    head_timeout_s: float = 10.0  # for the whole head: a client dribbling bytes is cut off
    body_timeout_s: float = 10.0
    write_timeout_s: float = 30.0
    max_connections: int = 64
    linger_s: float = 1.0  # after a refusal, unread bytes are drained (and dropped) this long


class _Refusal(Exception):
    """A request the server answers itself, with a 4xx and a message saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = Response(status, {"Content-Type": "text/plain"},
                                 message.encode() + b"\n")


async def serve(host: str, port: int, handler: Handler, *, admit: Admit | None = None,
                limits: ServerLimits = ServerLimits(), tls: ssl.SSLContext | None = None,
                peer_uri: str | None = None) -> asyncio.Server:
    """Serve one request per connection. Bad input gets a 4xx (never a traceback); a handler
    that fails gets a 500 and one logged traceback. With ``tls`` (which should require a
    client certificate), only a client whose certificate carries the URI SAN ``peer_uri``
    gets a request read."""
    active = 0

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if tls is not None and peer_uri is not None:
            names = (writer.get_extra_info("peercert") or {}).get("subjectAltName", ())
            if ("URI", peer_uri) not in names:
                refusal = _Refusal(403, f"only {peer_uri} may call this agent")
                await _answer(reader, writer, refusal.response, limits, linger=False)
                return
        if active >= limits.max_connections:
            refusal = _Refusal(503, "too many connections to this agent; try again")
            await _answer(reader, writer, refusal.response, limits, linger=False)
            return
        active += 1
        try:
            response, body_read = await _exchange(reader, handler, admit, limits)
            if response is not None:
                await _answer(reader, writer, response, limits, linger=not body_read)
            else:
                writer.close()
        except asyncio.CancelledError:
            # The server is going away. Python 3.11 logs a cancelled connection task as an
            # "unhandled exception" with a traceback: end it quietly instead.
            writer.close()
        finally:
            active -= 1

    return await asyncio.start_server(
        on_connection, host, port, limit=limits.head_bytes, ssl=tls,
        ssl_handshake_timeout=limits.head_timeout_s if tls is not None else None)


async def _exchange(reader: asyncio.StreamReader, handler: Handler, admit: Admit | None,
                    limits: ServerLimits) -> tuple[Response | None, bool]:
    """The response (None: the client left), and whether the request was read to its end."""
    try:
        async with asyncio.timeout(limits.head_timeout_s):
            request = await _read_request_head(reader, limits)
        refusal = admit(request) if admit is not None else None
        if refusal is not None:
            return refusal, False
        length = _body_length(request.headers, limits)
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                body = await reader.readexactly(length) if length else b""
        except TimeoutError as exc:
            raise _Refusal(408, f"the request body did not arrive within "
                                f"{limits.body_timeout_s:g}s") from exc
    except _Refusal as exc:
        return exc.response, False
    except TimeoutError:
        return _Refusal(408, f"the request head did not arrive within "
                             f"{limits.head_timeout_s:g}s").response, False
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, False
    try:
        return await handler(Request(request.method, request.path, request.query,
                                     request.headers, body)), True
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return Response(500, {"Content-Type": "text/plain"},
                        b"internal error in the agent; see agent.log\n"), True


async def _read_request_head(reader: asyncio.StreamReader, limits: ServerLimits) -> Request:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise _Refusal(431, f"the request head is larger than {limits.head_bytes} "
                            "bytes") from exc
    # Header bytes are opaque octets to HTTP: latin-1 decodes any of them, so a token that
    # is not UTF-8 is only a wrong token.
    request_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/") \
            or not parts[2].startswith("HTTP/1."):
        raise _Refusal(400, "malformed request line; send METHOD /path HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name or " " in name:
            raise _Refusal(400, f"malformed header line {line[:40]!r}")
        value = value.strip()
        if name == "content-length" and headers.get(name, value) != value:
            raise _Refusal(400, "conflicting Content-Length headers")
        headers[name] = value
    path, _, query = parts[1].partition("?")
    return Request(parts[0], path, query, headers)


def _body_length(headers: Mapping[str, str], limits: ServerLimits) -> int:
    if "transfer-encoding" in headers:
        raise _Refusal(411, "chunked request bodies are not accepted; send Content-Length")
    raw = headers.get("content-length", "0")
    if not (raw.isascii() and raw.isdigit()):
        raise _Refusal(400, f"Content-Length must be a number of bytes, not {raw[:20]!r}")
    length = int(raw)
    if length > limits.body_bytes:
        raise _Refusal(413, f"the request body is larger than {limits.body_bytes} bytes")
    return length


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  response: Response, limits: ServerLimits, *, linger: bool) -> None:
    head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
            f"Content-Length: {len(response.body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    try:
        async with asyncio.timeout(limits.write_timeout_s):
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
            await writer.drain()
        if linger:
            # Closing with unread bytes makes the kernel reset the connection, and the client
            # could lose the answer: drain what it still sends, dropping it, for a moment.
            writer.write_eof()
            async with asyncio.timeout(limits.linger_s):
                while await reader.read(65536):
                    pass
    except (ConnectionError, TimeoutError, OSError):
        pass
    finally:
        writer.close()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
