"""A WebSocket echo server (aiohttp): GET /ws upgrades and echoes each text message; any other
GET answers 200 "ok" (the readiness probe and plain calls)."""

from __future__ import annotations

import sys

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.StreamResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for message in socket:
        if message.type == WSMsgType.TEXT:
            await socket.send_str(f"echo: {message.data}")
    return socket


async def plain(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/{tail:.*}", plain)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
