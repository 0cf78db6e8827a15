"""What a stranger's connection may cost the control plane's HTTP ports (api/guard.py), and how
bad bodies are refused (api/routing.py), over real sockets: a guarded site serves a tiny app
with the API's middlewares."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from tests.support.pki import foreign_identity
from tulle.controlplane.api.guard import ServerLimits, mark_trusted, start_app
from tulle.controlplane.api.routing import Route, bearer_auth, build_app, json_body

T = TypeVar("T")
LIMITS = ServerLimits(max_body=4096, head_bytes=1024, head_timeout_s=0.3, body_timeout_s=0.3,
                      max_untrusted=2, linger_s=0.1)
AUTH = b"Authorization: Bearer api-token\r\n"
JSON = b"Content-Type: application/json\r\n"


async def _echo(request: web.Request) -> web.StreamResponse:
    return web.json_response({"got": await json_body(request)})


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


def with_site(body: Callable[[int, Any], Awaitable[T]], limits: ServerLimits = LIMITS,
              tls: ssl.SSLContext | None = None) -> T:
    async def main() -> T:
        app = build_app([Route("POST", "/echo", _echo), Route("GET", "/ok", _ok)],
                        [bearer_auth("api-token"), mark_trusted], limits=limits)
        runner = await start_app(app, "127.0.0.1", 0, ssl_context=tls)
        try:
            (site,) = runner.sites
            return await body(int(runner.addresses[0][1]), site)
        finally:
            await runner.cleanup()
    return asyncio.run(main())


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data``; the answer once whole (as its Content-Length says), or at close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                          if line.startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def error(answer: bytes) -> dict[str, str]:
    error: dict[str, str] = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    return error


def _post(body: bytes, headers: bytes = AUTH + JSON) -> bytes:
    return (b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


# (case, raw request, status, text the JSON error's message must contain)
REFUSED = [
    ("no token, large body declared",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n", 401,
     "missing or wrong API token"),
    ("a token that is not UTF-8", b"GET /ok HTTP/1.1\r\nHost: x\r\n"
     b"Authorization: Bearer \xff\xfe\r\n\r\n", 401, "missing or wrong API token"),
    ("malformed JSON", _post(b"{nope"), 400, "not valid JSON"),
    ("deeply nested JSON", _post(b"[" * 2000 + b"]" * 2000), 400, "nested too deeply"),
    ("a form", _post(b"a=b", AUTH + b"Content-Type: application/x-www-form-urlencoded\r\n"),
     415, "must be JSON, not application/x-www-form-urlencoded"),
    ("compressed", _post(gzip.compress(b"{}"), AUTH + JSON + b"Content-Encoding: gzip\r\n"),
     415, "compressed bodies (gzip) are not accepted"),
    ("body too large, none of it sent", b"POST /echo HTTP/1.1\r\nHost: x\r\n" + AUTH + JSON
     + b"Content-Length: 60000000\r\n\r\n", 413, "larger than the 4 KiB this port accepts"),
    ("body too large, chunked", b"POST /echo HTTP/1.1\r\nHost: x\r\n" + AUTH + JSON
     + b"Transfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b" " * 4096 + b"\r\n"
     + b"1\r\n \r\n0\r\n\r\n", 413, "larger than the 4 KiB"),
    ("head too large", b"GET /ok HTTP/1.1\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n", 431,
     "the request head is larger than 1024 bytes"),
]


@pytest.mark.parametrize(("raw", "expected", "text"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_bad_input_gets_a_4xx_that_says_what_to_fix(raw: bytes, expected: int, text: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    async def body(port: int, site: Any) -> bytes:
        return await exchange(port, raw, timeout=3.0)

    with caplog.at_level(logging.WARNING):
        answer = with_site(body)
    assert status(answer) == expected, answer
    assert text in error(answer)["message"], answer
    assert [r for r in caplog.records if r.exc_info] == []  # no traceback


def test_what_is_not_http_gets_a_400_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def body(port: int, site: Any) -> list[bytes]:
        return [await exchange(port, raw) for raw in (
            b"GET /ok HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
            b"GET /ok HTTP/1.1\r\n" + b"X: a\r\n" * 70 + b"Host: x\r\n\r\n",  # > 64
            bytes(range(256)) + b"\r\n\r\n")]

    with caplog.at_level(logging.DEBUG, logger="tulle.api.http"):
        answers = with_site(body)
    assert [status(a) for a in answers] == [400, 400, 400, 400], answers
    assert [r for r in caplog.records if r.exc_info or r.levelno > logging.DEBUG] == []


def test_a_good_body_is_read() -> None:
    async def body(port: int, site: Any) -> bytes:
        return await exchange(port, _post(b'{"a": [1, 2]}'))

    answer = with_site(body)
    assert status(answer) == 200 and answer.endswith(b'{"got": {"a": [1, 2]}}')


def test_a_slow_head_and_a_slow_body_are_cut_off() -> None:
    async def body(port: int, site: Any) -> list[bytes]:
        slow_head = exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\n")  # never ends
        slow_body = exchange(port, b"POST /echo HTTP/1.1\r\nHost: x\r\n" + AUTH + JSON
                             + b"Content-Length: 10\r\n\r\n{")  # 9 bytes never come
        return list(await asyncio.gather(slow_head, slow_body))

    head, slow = with_site(body)
    assert status(head) == 408 and "head did not arrive within 0.3s" in error(head)["message"]
    assert status(slow) == 408 and "body did not arrive within 0.3s" in error(slow)["message"]


def test_strangers_connections_are_counted_and_an_authenticated_one_is_not() -> None:
    async def body(port: int, site: Any) -> list[Any]:
        trusted = await asyncio.open_connection("127.0.0.1", port)
        stranger = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        seen: list[Any] = [site.untrusted, status(await exchange(port, b""))]  # full: 503
        # One authenticates (keep-alive): it stops counting, and stays open for more.
        reader, writer = trusted
        for _ in range(2):
            writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
            seen.append((await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1])
            await reader.readexactly(12)  # {"ok": true}
        seen.append(site.untrusted)
        # The other one fails to: it is answered, then closed.
        reader, writer = stranger
        writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        seen.append(status(await reader.read()))
        await asyncio.sleep(0.05)
        seen.append(site.untrusted)
        trusted[1].close()
        return seen

    assert with_site(body) == [2, 503, b"200", b"200", 1, 401, 0]


def server_tls(directory: Path) -> ssl.SSLContext:
    identity = foreign_identity("spiffe://test.local/server")
    (directory / "chain.pem").write_text(identity.chain_pem)
    (directory / "key.pem").write_text(identity.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    return context


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_tls_connections_count_from_before_their_handshake(tmp_path: Path) -> None:
    async def body(port: int, site: Any) -> list[Any]:
        # Silent connections hold a handshake's buffers: they count, the third is closed.
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        seen: list[Any] = [site.untrusted]
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        seen.append(await asyncio.wait_for(reader.read(), 1))
        # The deadline ends the handshakes, and they stop counting.
        seen += [await asyncio.wait_for(r.read(), 2) for r, _ in silent]
        await asyncio.sleep(0.05)
        seen.append(site.untrusted)
        # A client that speaks TLS is served, and bounded like any other.
        answers = []
        for raw in (b"GET /ok HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n",
                    b"GET /ok HTTP/1.1\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls())
            writer.write(raw)
            answers.append(await asyncio.wait_for(reader.read(), 2))
            writer.close()
        seen += [status(answers[0]), answers[0].endswith(b'{"ok": true}'), status(answers[1])]
        await asyncio.sleep(0.05)
        seen.append(site.untrusted)
        for _, writer in silent:
            writer.close()
        return seen

    assert with_site(body, tls=server_tls(tmp_path)) == [2, b"", b"", b"", 0, 200, True, 431, 0]
