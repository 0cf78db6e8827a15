"""What a connection to the control plane's HTTP ports may cost before it proves who it is.

Every local user can connect to the API and the identity port. aiohttp bounds each header
line, but not a whole head, how long it may take to arrive, nor how many connections may be
sending one: two hundred connections, each sending a megabyte of headers and never finishing,
held 480 MB of the control plane for an hour. So each connection passes a guard first:

- **Untrusted connections are counted**: at most ``max_untrusted`` at once, the next gets a
  503. A connection becomes trusted once a request on it passed authentication (the API's
  token: :func:`mark_trusted` runs after the auth middleware); the identity port has no such
  token, so all of its connections count. Agents' long-lived sessions are trusted and do not.
- **The first request's head** must arrive within ``head_timeout_s`` (a slowloris is cut off
  whatever its pace) and fit in ``head_bytes``.
- **An untrusted connection carries one request**: its response closes it, so a stranger's
  second head never escapes the two bounds above. Later heads of a trusted connection meet
  aiohttp's own limits and its keep-alive timeout (:func:`runner_options`).
- **Bodies** are read only by handlers, after authentication, through
  :func:`tulle.controlplane.api.routing.read_body`: at most the app's ``max_body`` bytes, within
  ``body_timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ServerLimits:
    max_body: int
    head_bytes: int = 16 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_untrusted: int = 256
    idle_timeout_s: float = 15.0  # a trusted keep-alive connection between requests
    # An unread body after an early answer (401, 413) is drained for this long, so the
    # caller gets the answer rather than a reset: bounded time, nothing kept.
    linger_s: float = 2.0


LIMITS = web.AppKey("limits", ServerLimits)
# Set on a request that reached a route open to all (no credentials were checked).
OPEN_ROUTE = "tulle.open_route"


async def start_app(app: web.Application, host: str, port: int, *,
                    ssl_context: ssl.SSLContext | None = None, **options: Any) -> web.AppRunner:
    """Serve ``app`` (made by ``routing.build_app``, which gives it its limits) on a guarded
    site. ``options``: more ``web.AppRunner`` arguments."""
    limits = app[LIMITS]
    runner = web.AppRunner(app, access_log=None, **runner_options(limits), **options)
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, limits, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def runner_options(limits: ServerLimits) -> dict[str, Any]:
    """aiohttp's own bounds, for ``web.AppRunner(...)``."""
    return {
        # Also the deadline of every later head on a keep-alive connection (aiohttp arms it
        # when a connection opens and after each response); the default is an hour.
        "keepalive_timeout": limits.idle_timeout_s,
        "max_headers": 64,
        "lingering_time": limits.linger_s,
        # Our clients never compress requests: a compressed body would only be a way to
        # make the control plane inflate more than max_body.
        "auto_decompress": False,
        "logger": _quiet_about_bad_requests(),
    }


class _MalformedRequests(logging.Filter):
    """aiohttp logs every request it cannot parse with a traceback, at ERROR: a stranger's
    garbage would fill the log. It is the caller's mistake, answered with a 400: debug only."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg, record.args = "refused a malformed request: %s", (error.message,)
            record.exc_info = record.exc_text = None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _quiet_about_bad_requests() -> logging.Logger:
    logger = logging.getLogger("tulle.api.http")
    if not any(isinstance(f, _MalformedRequests) for f in logger.filters):
        logger.addFilter(_MalformedRequests())
    return logger


class GuardedSite(web.BaseSite):
    """A TCP site (like ``web.TCPSite``) whose every connection passes a guard first. With an
    SSL context, the guard starts TLS itself once it has admitted a connection: the handshake
    alone costs asyncio a 256 KiB buffer, so a thousand silent connections to a TLS port held
    270 MB. They are counted from the moment they are accepted."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: ServerLimits, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._limits = limits
        self._untrusted = 0

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    @property
    def untrusted(self) -> int:
        """Connections open now and not yet authenticated."""
        return self._untrusted

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        # Assigned as aiohttp's own sites do: the runner reads the bound address from it.
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedProtocol(server(), self, self._ssl_context), self._host, self._port)

    def _admit(self) -> bool:
        if self._untrusted >= self._limits.max_untrusted:
            return False
        self._untrusted += 1
        return True

    def _release(self) -> None:
        self._untrusted -= 1


class _GuardedProtocol(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it, starts TLS if the port has it,
    bounds the first request's head, and only then lets aiohttp see the connection."""

    def __init__(self, inner: asyncio.Protocol, site: GuardedSite,
                 tls: ssl.SSLContext | None) -> None:
        self._inner = inner
        self._site = site
        self._limits = site._limits
        self._tls = tls
        self._transport: asyncio.Transport | None = None  # TLS's, once started
        self._handshake: asyncio.Task[None] | None = None
        self._inner_open = False  # aiohttp has seen the connection
        self._pending: list[bytes] = []  # what came before it did (right after a handshake)
        self._counted = False  # in the site's untrusted count
        self._trusted = False
        self._lost = False
        self._head_complete = False  # the first request's head
        self._head_bytes = 0
        self._tail = b""  # the last bytes seen, for a "\r\n\r\n" split across reads
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    @property
    def trusted(self) -> bool:
        return self._trusted

    def trust(self) -> None:
        self._trusted = True
        self._uncount()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._site._admit():
            if self._tls is not None:
                transport.abort()  # no TLS yet: there is no one to tell why
            else:
                self._refuse(503, "too many connections are waiting to authenticate",
                             "try again in a moment", kind="unavailable")
            return
        self._counted = True
        # One deadline for the handshake and the head together.
        self._timer = asyncio.get_running_loop().call_later(self._limits.head_timeout_s,
                                                           self._too_slow)
        if self._tls is None:
            self._open(transport)
            return
        transport.pause_reading()  # the handshake reads from here on
        self._handshake = asyncio.ensure_future(self._start_tls(transport, self._tls))

    def data_received(self, data: bytes) -> None:
        if not self._inner_open:  # a handshake just completed: _open is about to run
            self._pending.append(data)
            return
        if self._refused or self._closing():
            return
        if not self._head_complete:
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
            if self._head_bytes > self._limits.head_bytes:
                self._refuse(431, f"the request head is larger than {self._limits.head_bytes} "
                             "bytes", "send fewer or shorter headers")
                return
            if end >= 0:
                self._head_complete = True
                self._cancel_timer()
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner_open else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._uncount()
        self._cancel_timer()
        if self._inner_open:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner_open:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner_open:
            self._inner.resume_writing()

    # -- TLS, and handing over to aiohttp ----------------------------------------------------

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            secure = await asyncio.get_running_loop().start_tls(
                raw, self, context, server_side=True,
                ssl_handshake_timeout=self._limits.head_timeout_s)
        except OSError:  # SSLError, a reset, the handshake's deadline
            self._end_handshake(raw)  # a failed one never reaches connection_lost
            return
        except asyncio.CancelledError:
            self._end_handshake(raw)
            raise
        if secure is None or self._lost:
            self._end_handshake(raw)
            return
        self._open(secure)

    def _end_handshake(self, raw: asyncio.Transport) -> None:
        raw.abort()
        self._lost = True
        self._uncount()
        self._cancel_timer()

    def _open(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._inner_open = True
        self._inner.connection_made(transport)
        pending, self._pending = self._pending, []
        for data in pending:
            self.data_received(data)

    # -- bounds ------------------------------------------------------------------------------

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._site._release()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def _too_slow(self) -> None:
        self._timer = None
        if self._head_complete or self._refused or self._closing():
            return
        if self._tls is not None and not self._inner_open:
            assert self._transport is not None
            self._transport.abort()  # still in the handshake: _start_tls cleans up
            return
        self._refuse(408, f"the request head did not arrive within "
                     f"{self._limits.head_timeout_s:g}s", "send the whole head at once")

    def _refuse(self, status: int, message: str, hint: str, kind: str = "usage") -> None:
        """Answer in aiohttp's place (it has not seen a whole request), and close."""
        assert self._transport is not None
        body = json.dumps({"error": {"type": kind, "message": message, "hint": hint}}).encode()
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large",
                  503: "Service Unavailable"}[status]
        transport = self._transport
        transport.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json"
                        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                        .encode() + body)
        self._refused = True
        if not self._counted or not transport.can_write_eof():
            transport.close()
            return
        # Closing with unread bytes would reset the connection, and the client could lose the
        # answer: end our side, drop what still comes for a moment (still counted), then close.
        transport.write_eof()
        asyncio.get_running_loop().call_later(self._limits.linger_s, transport.close)


def _guarded(request: web.Request) -> _GuardedProtocol | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _GuardedProtocol) else None


def trust_connection(request: web.Request) -> None:
    """The caller authenticated: its connection no longer counts as a stranger's."""
    if (guarded := _guarded(request)) is not None:
        guarded.trust()


@web.middleware
async def mark_trusted(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """After authentication: the connection no longer counts as a stranger's (a request to
    a route open to all, such as the dashboard's login page, is no authentication)."""
    if (guarded := _guarded(request)) is not None and not request.get(OPEN_ROUTE):
        guarded.trust()
    return await handler(request)


@web.middleware
async def close_untrusted(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """A connection that did not authenticate carries one request only."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if (guarded := _guarded(request)) is not None and not guarded.trusted:
            exc.force_close()
        raise
    if (guarded := _guarded(request)) is not None and not guarded.trusted:
        response.force_close()
    return response
