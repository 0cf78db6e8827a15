"""A WebSocket client (aiohttp) through the sidecar's HTTP proxy: connects to URL, sends
MESSAGES text messages, prints one JSON line with the answers."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp


async def main(url: str, count: int) -> None:
    answers = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url, proxy=os.environ["HTTP_PROXY"]) as socket:
        for index in range(count):
            await socket.send_str(f"m{index}")
            answers.append((await socket.receive(timeout=10)).data)
    print(json.dumps({"answers": answers}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
