"""The agent's HTTP server: credentials are checked on the head before any body byte is read,
the head and the body are capped and timed, connections are counted, and bad input gets a
4xx that says what to fix, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tulle.agent import http
from tulle.agent.adminproxy import AdminProxy

T = TypeVar("T")
TOKEN = "agent-token-0123456789"
LIMITS = http.ServerLimits(head_bytes=1024, body_bytes=2048, head_timeout_s=0.3,
                           body_timeout_s=0.3, max_connections=2, linger_s=0.2)


def admit(head: http.Request) -> http.Response | None:
    if head.headers.get("authorization") != f"Bearer {TOKEN}":
        return http.Response(401, {}, b"who are you?\n")
    return None


class Recorder:
    def __init__(self) -> None:
        self.requests: list[http.Request] = []

    async def __call__(self, request: http.Request) -> http.Response:
        self.requests.append(request)
        if request.path == "/fail":
            raise RuntimeError("a bug")
        return http.Response(200, {}, b"got %d bytes\n" % len(request.body))


def with_server(body: Callable[[int, Recorder], Awaitable[T]],
                limits: http.ServerLimits = LIMITS) -> T:
    async def main() -> T:
        recorder = Recorder()
        server = await http.serve("127.0.0.1", 0, recorder, admit=admit, limits=limits)
        try:
            return await body(server.sockets[0].getsockname()[1], recorder)
        finally:
            server.close()
    return asyncio.run(main())


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data``, then read until the server closes (or resets) the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                answer += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()

# (case, raw request, status, text the answer must contain)
REFUSED = [
    ("garbage", b"\x00\x01\x02 nonsense\r\n\r\n", 400, b"malformed request line"),
    ("no version", b"GET /x\r\n\r\n", 400, b"malformed request line"),
    ("header without a colon", b"GET /x HTTP/1.1\r\nnonsense\r\n\r\n", 400,
     b"malformed header line"),
    ("no token", b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 401, b"who are you"),
    ("a token that is not UTF-8", b"GET /x HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
     401, b"who are you"),
    ("length not a number", b"POST /x HTTP/1.1\r\n" + AUTH + b"Content-Length: 1_0\r\n\r\n",
     400, b"Content-Length must be a number"),
    ("negative length", b"POST /x HTTP/1.1\r\n" + AUTH + b"Content-Length: -1\r\n\r\n", 400,
     b"Content-Length must be a number"),
    ("conflicting lengths", b"POST /x HTTP/1.1\r\n" + AUTH
     + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, b"conflicting"),
    ("chunked", b"POST /x HTTP/1.1\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 411, b"send Content-Length"),
    ("body too large", b"POST /x HTTP/1.1\r\n" + AUTH + b"Content-Length: 2049\r\n\r\n", 413,
     b"larger than 2048 bytes"),
    ("head too large", b"GET /x HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 2000 + b"\r\n\r\n", 431,
     b"larger than 1024 bytes"),
]


@pytest.mark.parametrize(("raw", "expected", "text"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_bad_requests_get_a_4xx_that_says_why(raw: bytes, expected: int, text: bytes,
                                              caplog: pytest.LogCaptureFixture) -> None:
    async def body(port: int, recorder: Recorder) -> bytes:
        answer = await exchange(port, raw)
        assert recorder.requests == []
        return answer

    with caplog.at_level(logging.WARNING):
        answer = with_server(body)
    assert status(answer) == expected, answer
    assert text in answer
    assert caplog.records == []  # bad input is not the agent's problem: nothing logged


def test_a_good_request_reaches_the_handler_with_its_body() -> None:
    async def body(port: int, recorder: Recorder) -> bytes:
        answer = await exchange(port, b"POST /x?a=1 HTTP/1.1\r\n" + AUTH
                                + b"Content-Length: 2048\r\n\r\n" + b"b" * 2048)
        (request,) = recorder.requests
        assert (request.method, request.path, request.query) == ("POST", "/x", "a=1")
        return answer

    assert with_server(body).endswith(b"got 2048 bytes\n")


def test_credentials_are_refused_before_any_body_byte_is_read() -> None:
    async def body(port: int, recorder: Recorder) -> bytes:
        # A 60 MB body is declared and none of it is sent: the answer comes anyway.
        return await exchange(port, b"POST /x HTTP/1.1\r\nContent-Length: 60000000\r\n\r\n",
                              timeout=2.0)

    assert status(with_server(body)) == 401


def test_a_slow_head_and_a_slow_body_are_cut_off() -> None:
    async def body(port: int, recorder: Recorder) -> list[bytes]:
        slow_head = exchange(port, b"GET /x HTTP/1.1\r\n")  # never ends
        slow_body = exchange(port, b"POST /x HTTP/1.1\r\n" + AUTH
                             + b"Content-Length: 10\r\n\r\nabc")  # 7 bytes never come
        return list(await asyncio.gather(slow_head, slow_body))

    head, slow = with_server(body)
    assert status(head) == 408 and b"head did not arrive within 0.3s" in head
    assert status(slow) == 408 and b"body did not arrive within 0.3s" in slow


def test_connections_beyond_the_limit_are_refused() -> None:
    async def body(port: int, recorder: Recorder) -> bytes:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)  # let the server accept them
        try:
            return await exchange(port, b"GET /x HTTP/1.1\r\n" + AUTH + b"\r\n")
        finally:
            for _, writer in held:
                writer.close()

    answer = with_server(body, http.ServerLimits(max_connections=2))
    assert status(answer) == 503 and b"too many connections" in answer


def test_a_failing_handler_gets_a_500_and_one_logged_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    async def body(port: int, recorder: Recorder) -> bytes:
        return await exchange(port, b"GET /fail HTTP/1.1\r\n" + AUTH + b"\r\n")

    with caplog.at_level(logging.ERROR):
        answer = with_server(body)
    assert status(answer) == 500 and b"see agent.log" in answer
    (record,) = caplog.records
    assert record.getMessage() == "GET /fail failed" and record.exc_info is not None


# -- the admin proxy: what it admits, and what it says about bad bodies

class NoEnvoy:
    """An admin interface with nobody listening: admitted requests get the proxy's 502."""

    async def request(self, method: str, target: str, *, timeout: float = 10.0
                      ) -> http.Response:
        raise ConnectionRefusedError("nobody listens on the admin socket")


def proxy_exchange(raw: bytes) -> bytes:
    async def main() -> bytes:
        proxy = AdminProxy(TOKEN, NoEnvoy(), metrics=_no_metrics, metrics_token="m" * 20)
        await proxy.start("127.0.0.1", 0)
        assert proxy._servers
        try:
            return await exchange(proxy._servers[0].sockets[0].getsockname()[1], raw)
        finally:
            await proxy.close()
    return asyncio.run(main())


async def _no_metrics() -> str:
    return "up 1\n"


def _post(path: str, body: bytes, headers: bytes = AUTH) -> bytes:
    return (f"POST {path} HTTP/1.1\r\n".encode() + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


# (case, raw request, status, text the answer must contain)
PROXY = [
    ("deeply nested JSON", _post("/logging", b"[" * 8000 + b"]" * 8000), 400,
     b"nested too deeply"),
    ("not JSON", _post("/logging", b"{nope"), 400, b"Expecting property name"),
    ("not UTF-8", _post("/logging", b'{"level": "\xff"}'), 400, b"send a JSON object"),
    ("a form", _post("/logging", b"level=debug",
                     AUTH + b"Content-Type: application/x-www-form-urlencoded\r\n"), 415,
     b"send Content-Type: application/json"),
    ("no token, large body declared", b"POST /logging HTTP/1.1\r\nContent-Length: 9999999\r\n"
     b"\r\n", 401, b"wrong agent token"),
    ("the metrics token on an admin page", b"GET /admin/stats HTTP/1.1\r\n"
     b"Authorization: Bearer " + b"m" * 20 + b"\r\n\r\n", 401, b"wrong agent token"),
    ("the metrics token on /metrics", b"GET /metrics HTTP/1.1\r\n"
     b"Authorization: Bearer " + b"m" * 20 + b"\r\n\r\n", 200, b"up 1"),
    ("no token on /metrics", b"GET /metrics HTTP/1.1\r\n\r\n", 401, b"wrong metrics token"),
]


@pytest.mark.parametrize(("raw", "expected", "text"), [c[1:] for c in PROXY],
                         ids=[c[0] for c in PROXY])
def test_the_admin_proxy_admits_by_token_and_refuses_bad_bodies(
        raw: bytes, expected: int, text: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        answer = proxy_exchange(raw)
    assert status(answer) == expected, answer
    assert text in answer
    assert caplog.records == []
