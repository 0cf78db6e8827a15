"""The agent's client of Envoy's admin socket: reachable however deep the workload's directory,
and placed where Envoy binds it (relative to its working directory)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tulle.agent import envoyadmin
from tulle.agent.envoyadmin import ADMIN_SOCKET, SUN_PATH_MAX, EnvoyAdmin, connectable
from tulle.errors import EnvoyError


def deep(tmp_path: Path, length: int) -> Path:
    """A directory whose admin socket's path is ``length`` bytes long or more."""
    directory = tmp_path
    while len(os.fsencode(directory / ADMIN_SOCKET)) < length:
        directory = directory / ("d" * 40)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def answer_once(directory: Path) -> str:
    """Serve one HTTP exchange on ``directory``/admin.sock, as Envoy would; return the
    request line the client sent."""
    seen: list[str] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.decode().split("\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nLIVE\n")
        await writer.drain()
        writer.close()

    with connectable(directory / ADMIN_SOCKET) as address:
        server = await asyncio.start_unix_server(on_connection, address)
    async with server:
        response = await EnvoyAdmin(directory).request("GET", "/ready", timeout=5)
    assert (response.status, response.body) == (200, b"LIVE\n")
    return seen[0]


@pytest.mark.parametrize("length", [40, SUN_PATH_MAX + 1, 300])
def test_reaches_the_socket_however_long_its_path(tmp_path: Path, length: int) -> None:
    directory = deep(tmp_path, length)
    assert asyncio.run(answer_once(directory)) == "GET /ready HTTP/1.1"


def test_a_long_path_is_reached_through_a_descriptor_of_the_directory(tmp_path: Path) -> None:
    directory = deep(tmp_path, 200)
    with connectable(directory / ADMIN_SOCKET) as address:
        assert address.startswith("/proc/self/fd/") and address.endswith("/" + ADMIN_SOCKET)
        assert len(address) <= SUN_PATH_MAX
        assert Path(address).parent.resolve() == directory.resolve()
    short = tmp_path / ADMIN_SOCKET
    with connectable(short) as address:
        assert address == str(short)


def test_without_a_way_around_the_limit_the_error_says_which_and_how_to_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envoyadmin, "_FD_DIR", str(tmp_path / "no-proc"))
    EnvoyAdmin(tmp_path)  # short enough: no need of it
    with pytest.raises(EnvoyError) as caught:
        EnvoyAdmin(deep(tmp_path, 200))
    assert f"{SUN_PATH_MAX} bytes" in caught.value.message
    assert "--state-dir" in (caught.value.hint or "")


def test_envoy_binds_a_private_socket_by_a_name_relative_to_its_directory(
        tmp_path: Path) -> None:
    admin = EnvoyAdmin(tmp_path)
    assert admin.bootstrap() == {"address": {"pipe": {"path": "admin.sock", "mode": 0o600}}}
    assert admin.path == tmp_path / "admin.sock"
