"""Just enough HTTP/1.1 for the agent, on asyncio streams.

The agent runs beside every workload, so it avoids HTTP libraries that cost more memory than
the agent itself. It needs three things: JSON requests to the control plane, one long-lived
streaming response (its session), and a tiny server for the control plane to read Envoy's admin
pages through.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
            writer.write(_encode_request(method, host, port, path, headers, body))
            await writer.drain()
            status_line, response_headers = await _read_head(reader)
            status = int(status_line.split(" ", 2)[1])
            return Response(status, response_headers, await _read_body(reader, response_headers))
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


async def request_unix(socket_path: str, method: str, path: str, *,
                       headers: Mapping[str, str] | None = None, body: bytes | None = None,
                       timeout: float = 10.0) -> Response:
    """:func:`request` over a Unix socket: how the agent reaches Envoy's admin interface."""
    async def exchange() -> Response:
        reader, writer = await asyncio.open_unix_connection(socket_path,
                                                            limit=MAX_HEADER_BYTES)
        try:
            writer.write(_encode_request(method, "localhost", None, path, headers, body))
            await writer.drain()
            status_line, response_headers = await _read_head(reader)
            status = int(status_line.split(" ", 2)[1])
            return Response(status, response_headers, await _read_body(reader, response_headers))
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
                      timeout: float = 10.0) -> LineStream:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES), timeout)
    try:
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


async def serve(host: str, port: int, handler: Handler) -> asyncio.Server:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line, headers = await asyncio.wait_for(_read_head(reader), 10)
            method, target, _ = request_line.split(" ", 2)
            length = int(headers.get("content-length", "0") or 0)
            if length > MAX_BODY_BYTES:
                raise HttpError("request body too large")
            body = await reader.readexactly(length) if length else b""
            path, _, query = target.partition("?")
            response = await handler(Request(method, path, query, headers, body))
        except (HttpError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            response = Response(400, {"Content-Type": "text/plain"}, b"bad request\n")
        except ConnectionError:
            writer.close()
            return
        head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
                f"Content-Length: {len(response.body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(on_connection, host, port, limit=MAX_HEADER_BYTES)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            502: "Bad Gateway", 503: "Service Unavailable"}
