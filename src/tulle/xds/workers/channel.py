"""Messages between the control plane and its xDS worker processes: pickled tuples, each
framed by its length, over a socket pair the control plane made (never a network port: only
the two processes hold its ends)."""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        # A push to a thousand proxies is one message of several MiB: no line limit applies.
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**26)
        return cls(reader, writer)

    def send(self, *message: Any) -> None:
        """Queue one message (a tuple whose first item names it); it goes out in order."""
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_HEADER.pack(len(body)) + body)

    def backlog(self) -> int:
        """Bytes queued and not yet taken by the other end."""
        return self._writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self._writer.drain()

    async def receive(self) -> tuple[Any, ...] | None:
        """The next message; None once the other end is gone."""
        try:
            header = await self._reader.readexactly(_HEADER.size)
            body = await self._reader.readexactly(_HEADER.unpack(header)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message: tuple[Any, ...] = pickle.loads(body)  # from our own control plane
        return message

    def close(self) -> None:
        self._writer.close()
