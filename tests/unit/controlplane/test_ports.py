"""Port 0 lets the kernel choose each of the control plane's ports; the endpoint record then
holds the ports actually bound, so clients, agents and a restart find them."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tulle.client import ApiClient
from tulle.controlplane.app import ControlPlane
from tulle.controlplane.daemon import StartOptions, resolve_endpoint
from tulle.settings import (
    DEFAULT_API_PORT,
    DEFAULT_IDENTITY_PORT,
    DEFAULT_XDS_PORT,
    ControlPlaneEndpoint,
    StatePaths,
    load_or_create_metrics_token,
    load_or_create_token,
)

PREVIOUS = ControlPlaneEndpoint(api_port=41000, xds_port=41001, identity_port=41002)


@pytest.mark.parametrize(("previous", "options", "expected"), [
    (None, StartOptions(), (DEFAULT_API_PORT, DEFAULT_XDS_PORT, DEFAULT_IDENTITY_PORT)),
    (None, StartOptions(api_port=0, xds_port=0, identity_port=0), (0, 0, 0)),
    # A restart without flags reuses the last run's ports (the ones it bound)...
    (PREVIOUS, StartOptions(), (41000, 41001, 41002)),
    # ...and 0 is a value given now, not "unset": it does not fall back to them.
    (PREVIOUS, StartOptions(api_port=0), (0, 41001, 41002)),
    (PREVIOUS, StartOptions(xds_port=42000, identity_port=0), (41000, 42000, 0)),
    # A record written with 0s by hand asks for kernel-chosen ports again.
    (ControlPlaneEndpoint(api_port=0, xds_port=0, identity_port=0), StartOptions(), (0, 0, 0)),
])
def test_resolve_endpoint_ports(tmp_path: Path, previous: ControlPlaneEndpoint | None,
                                options: StartOptions, expected: tuple[int, int, int]) -> None:
    paths = StatePaths(tmp_path)
    paths.ensure()
    if previous is not None:
        previous.save(paths)
    endpoint = resolve_endpoint(paths, options)
    assert (endpoint.api_port, endpoint.xds_port, endpoint.identity_port) == expected


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_port_0_binds_kernel_chosen_ports_and_records_them(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "state")
    paths.ensure()
    load_or_create_metrics_token(paths)
    token = load_or_create_token(paths)  # ApiClient.from_state reads it
    asked = ControlPlaneEndpoint(api_port=0, xds_port=0, identity_port=0)
    asked.save(paths)  # as `tulle up` does before serving

    async def main() -> None:
        cp = ControlPlane(paths, asked, token)
        await cp.start()
        try:
            recorded = ControlPlaneEndpoint.load(paths)
            assert recorded == cp.endpoint
            ports = {recorded.api_port, recorded.xds_port, recorded.identity_port}
            assert 0 not in ports and len(ports) == 3, recorded
            assert all(listening(port) for port in ports)
            # Clients find the API through the record; status reports the real addresses.
            status = await asyncio.to_thread(
                lambda: ApiClient.from_state(paths, timeout=5.0).get("/v1/status"))
            assert status["apiUrl"] == f"http://127.0.0.1:{recorded.api_port}"
            assert status["xdsAddress"] == f"127.0.0.1:{recorded.xds_port}"
            assert status["identityAddress"] == f"127.0.0.1:{recorded.identity_port}"
        finally:
            await cp.stop()

    asyncio.run(main())
    # A restart without port flags asks for the very ports the kernel chose.
    again = resolve_endpoint(paths, StartOptions())
    assert again == ControlPlaneEndpoint.load(paths)
    assert 0 not in (again.api_port, again.xds_port, again.identity_port)
