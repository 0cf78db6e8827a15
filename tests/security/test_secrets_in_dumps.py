"""No secret of a sidecar in any view of its config (issue 14): Envoy's config holds the
workload's xDS credential (the bootstrap's ``initial_metadata``) and, while a tap is attached,
its access-log token; with a stolen credential a new ADS stream for the node was accepted.
The agent redacts them from every config_dump it serves, so neither the API, nor
`tulle proxy-config`, nor a bug report shows them; the intended config hides the token too.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh
from tests.support.scenarios import books_and_web
from tests.support.tap import Tap

pytestmark = pytest.mark.envoy

NODES = ("books-1", "web-1")
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{20,})")


def secrets_of(mesh: Mesh, name: str) -> set[str]:
    """A sidecar's credentials, read as the workload's owner: the xDS credential from the
    bootstrap the agent wrote, and every bearer token in Envoy's own config (the access-log
    token of a tap), through the admin socket."""
    bootstrap = json.loads((mesh.paths.workload_dir("default", name) / "bootstrap.json")
                           .read_text())
    [ads] = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"]
    credential = ads["initial_metadata"][0]["value"].removeprefix("Bearer ")
    status, dump = mesh.envoy_admin(name, "GET", "/config_dump")
    assert status == 200
    in_envoy = set(_BEARER.findall(dump))
    assert credential in in_envoy and len(in_envoy) >= 2, \
        "Envoy holds the xDS credential and, with a tap attached, its access-log token"
    return in_envoy


def archive_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        members = [archive.extractfile(m) for m in archive.getmembers() if m.isfile()]
        return raw + b"".join(m.read() for m in members if m is not None)


def test_no_credential_in_any_view_of_a_sidecars_config(exposed_mesh: Mesh,
                                                        tmp_path: Path) -> None:
    mesh = exposed_mesh
    port = books_and_web(mesh)
    tap = Tap.start(mesh, "books")  # adds an access logger, with its token, to both sidecars
    try:
        assert request(port, "/").status == 200
        secrets = {name: secrets_of(mesh, name) for name in NODES}
        views: dict[str, bytes] = {}
        for name in NODES:
            node = f"{name}.default"
            status, body = mesh.api.raw("GET", f"/v1/proxies/{node}/admin/config_dump",
                                        query={"include_eds": ""})
            assert status == 200 and b"[redacted]" in body
            views[f"API config_dump of {name}"] = body
            views[f"proxy-config all {name}"] = mesh.cli(
                "proxy-config", "all", name, "-o", "json").stdout.encode()
            views[f"API intended of {name}"] = mesh.api.raw(
                "GET", f"/v1/proxies/{node}/intended")[1]
        target = tmp_path / "report.tar.gz"
        mesh.cli("bug-report", "--output", str(target), timeout=180)
        views["bug report"] = archive_bytes(target)
    finally:
        tap.stop()

    for view, content in views.items():
        for name, values in secrets.items():
            for secret in values:
                assert secret.encode() not in content, f"a secret of {name} is in the {view}"
