"""The dashboard's routes, on the API port.

    GET  /ui/                         -> the topology
    GET  /ui/{page}                   one page (pages.PAGES)
    GET  /ui/service/{namespace}/{name}
    GET  /ui/login[?code=CODE]        the login page; a good one-time code opens a session
    POST /ui/session                  Authorization: Bearer TOKEN opens a session (no body)
    POST /ui/logout
    GET  /ui/static/{file}            the script and style (no CDN: everything is served here)
    GET  /ui/events                   server-sent events: one "update" whenever the mesh or
                                      its figures may have changed, at most every UPDATE_S
    POST /v1/ui/links                 (API token) a one-time login link for `tulle dashboard`
    GET  /v1/ui/sparklines[?window=]  requests and failures per second over the window

Authentication is the API's middleware (routing.bearer_auth): the login page, the session
route and the static files are open; every other /ui/ route needs a session cookie, and a
session reads only the API routes sessions.READABLE_PREFIXES name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from importlib import resources

from aiohttp import web

from tulle.controlplane.api.routing import Route, json_response, query_seconds
from tulle.controlplane.api.ui.pages import ARGUMENT, LOGIN, PAGE_NAMES, PAGES, shell
from tulle.controlplane.api.ui.sessions import COOKIE, SESSION_TTL_S, UiSessions
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.errors import AuthError, NotFoundError
from tulle.security import bearer, tokens_match

UPDATE_S = 2.0
SPARK_WINDOW_S = 900.0
STATIC = {"app.js": "application/javascript", "login.js": "application/javascript",
          "app.css": "text/css"}
# Pages are code, not data: nothing is loaded from anywhere else, nothing framed.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                      "frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}


def routes(sessions: UiSessions, token: str, telemetry: TelemetryService,
           mesh_version: Callable[[], int]) -> list[Route]:
    def page(body: str) -> web.Response:
        return web.Response(text=body, content_type="text/html", headers=HEADERS)

    def with_session(response: web.StreamResponse, session: str) -> web.StreamResponse:
        response.set_cookie(COOKIE, session, max_age=int(SESSION_TTL_S), httponly=True,
                            samesite="Strict", path="/")
        return response

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"/ui/{PAGES[0][0]}")

    async def one_page(request: web.Request) -> web.StreamResponse:
        name = request.match_info["page"]
        if name not in PAGE_NAMES:
            raise NotFoundError(f"no dashboard page {name!r}",
                                hint="pages: " + ", ".join(sorted(PAGE_NAMES)))
        return page(shell(name))

    async def service(request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not (ARGUMENT.fullmatch(namespace) and ARGUMENT.fullmatch(name)):
            raise NotFoundError("no such service", hint="open one from /ui/services")
        return page(shell("service", f"{namespace}/{name}"))

    async def login(request: web.Request) -> web.StreamResponse:
        code = request.query.get("code")
        if code:
            session = sessions.redeem(code)
            if session is None:
                raise AuthError("this login link is used, expired or wrong",
                                hint="run `tulle dashboard` for a new one (each works once, "
                                     "for a minute)")
            return with_session(web.HTTPSeeOther("/ui/"), session)
        return page(LOGIN)

    async def open_session(request: web.Request) -> web.StreamResponse:
        if not tokens_match(token, bearer(request.headers.get("Authorization"))):
            raise AuthError("wrong API token", hint="the token is in api-token in the state "
                                                    "directory")
        return with_session(json_response({"ok": True}), sessions.open())

    async def logout(request: web.Request) -> web.StreamResponse:
        sessions.close(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/ui/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in STATIC:
            raise NotFoundError(f"no dashboard file {name!r}")
        body = resources.files("tulle.controlplane.api.ui").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name], headers=HEADERS)

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        last: tuple[int, int] | None = None
        sent = 0
        while True:
            state = (mesh_version(), telemetry.windows.reports)
            if state != last or sent % 15 == 0:  # and a heartbeat every 30 s
                data = {"meshVersion": state[0], "reports": state[1], "at": time.time()}
                await response.write(f"event: update\ndata: {json.dumps(data)}\n\n".encode())
                last = state
            sent += 1
            await asyncio.sleep(UPDATE_S)

    async def links(request: web.Request) -> web.StreamResponse:
        code, ttl = sessions.link()
        return json_response({"path": f"/ui/login?code={code}", "expiresInSeconds": ttl})

    async def spark(request: web.Request) -> web.StreamResponse:
        seconds = query_seconds(request, "window", SPARK_WINDOW_S)
        telemetry.window(seconds)  # a wrong window fails before any peer is asked
        peers = await telemetry.ask_peers(seconds, seconds)
        return json_response(telemetry.sparkline_rows(seconds, peers))

    return [
        Route("GET", "/ui/", home),
        Route("GET", "/ui", home),
        Route("GET", "/ui/login", login),
        Route("POST", "/ui/session", open_session),
        Route("POST", "/ui/logout", logout),
        Route("GET", "/ui/static/{file}", static),
        Route("GET", "/ui/events", events),
        Route("GET", "/ui/service/{namespace}/{name}", service),
        Route("GET", "/ui/{page}", one_page),
        Route("POST", "/v1/ui/links", links),
        Route("GET", "/v1/ui/sparklines", spark),
    ]


