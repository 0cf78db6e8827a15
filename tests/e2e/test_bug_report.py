"""`tulle bug-report` on a running mesh with real sidecars: every expected file is in the
archive, and no private key, token or secret header value is anywhere in it."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import SEARCH_ROUTE, books_and_web

pytestmark = pytest.mark.envoy

MESH = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  accessLog: {redactHeaders: [X-Api-Key]}
"""

SECRET_HEADERS = {"Authorization": "Bearer header-secret-bearer-4242",
                  "Cookie": "session=cookie-secret-4343", "X-Api-Key": "apikey-secret-4444"}
NODES = ("books-1.default", "web-1.default")


def stored_tokens(mesh: Mesh) -> list[str]:
    """Every agent and xDS token the control plane keeps for its workloads."""
    db = sqlite3.connect(mesh.paths.database)
    try:
        records = [json.loads(r) for (r,) in db.execute("SELECT record FROM workloads")]
    finally:
        db.close()
    tokens = [str(value) for record in records for key, value in _walk(record)
              if "token" in key.lower() and isinstance(value, str) and value]
    assert len(tokens) >= 2 * len(NODES), records
    return tokens


def _walk(value: object, key: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _walk(v, str(k))]
    if isinstance(value, list):
        return [pair for v in value for pair in _walk(v, key)]
    return [(key, value)]


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    file = archive.extractfile(member)
    assert file is not None
    return file.read()


def private_key_lines(state: Path) -> list[str]:
    """The base64 lines of every private key in the state directory (CA and workloads) that
    hold secret bytes. A line that encodes only part of the key's public point is left out:
    the same bytes are in the key's certificate, whose base64 may line up with it."""
    lines = []
    for pem in [*state.rglob("*.pem"), *state.rglob("*.key")]:
        text = pem.read_text(errors="replace")
        if "PRIVATE KEY" not in text:
            continue
        key = serialization.load_pem_private_key(text.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), pem  # as tulle makes them
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        lines += [line for line in text.splitlines()
                  if len(line) >= 40 and base64.b64decode(line) not in public]
    assert lines, "the mesh has private keys to look for"
    return lines


def test_bug_report_has_everything_and_no_secret(mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=MESH)
    port = books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)
    mesh.sync()
    # Debug logging makes Envoy write request headers, secret ones included, to its log.
    mesh.cli("proxy", "log-level", "web-1", "debug")
    assert request(port, "/search", headers=SECRET_HEADERS).status == 200
    envoy_log = mesh.state_dir / "workloads" / "web-1.default" / "envoy.log"
    wait_for("Envoy to log the secret header",
             lambda: "header-secret-bearer-4242" in envoy_log.read_text())

    target = tmp_path / "report.tar.gz"
    result = json.loads(mesh.cli("bug-report", "--output", str(target), "-o", "json",
                                 timeout=180).stdout)
    assert result["file"] == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    raw = target.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        files = {m.name.removeprefix("tulle-bug-report/"): _read(archive, m)
                 for m in archive.getmembers() if m.isfile()}

    expected = {"manifest.json", "version.json", "controlplane/status.json",
                "controlplane/controlplane.log", "resources.json", "history.json",
                "workloads.json", "proxies/status.json", "xds/nacks.json",
                "identity/status.json", *(f"telemetry/{v}.json" for v in
                                          ("workloads", "services", "routes", "edges"))}
    for node in NODES:
        expected |= {f"proxies/{node}/{f}" for f in ("config_dump.json", "stats.json",
                                                     "clusters.json", "envoy.log")}
    assert expected <= set(files), sorted(expected - set(files))

    manifest = json.loads(files["manifest.json"])
    recorded = {entry["file"]: entry for entry in manifest["files"]}
    for name in ("check.json", "analyze.json", "diagnose.json"):
        entry = recorded[name]  # collected, or its failure recorded
        assert entry["ok"] == (name in files), entry
        assert entry["ok"] or entry["error"], entry
    assert all(recorded[f]["ok"] for f in expected - {"manifest.json"})
    assert "x-api-key" in manifest["redactedHeaders"]

    resources = json.loads(files["resources.json"])
    assert [r["metadata"]["name"] for r in resources["HTTPRoute"]] == ["books"]
    assert len(json.loads(files["history.json"])) == 2
    web_log = files["proxies/web-1.default/envoy.log"].decode()
    assert "[debug]" in web_log and "[redacted]" in web_log
    dump = json.loads(files["proxies/web-1.default/config_dump.json"])
    assert dump["configs"], "a real config dump"

    # Scan every byte of the archive, each file uncompressed and the whole compressed.
    forbidden = [mesh.api.token, *stored_tokens(mesh), *private_key_lines(mesh.state_dir),
                 "PRIVATE KEY", "header-secret-bearer-4242", "cookie-secret-4343",
                 "apikey-secret-4444"]
    metrics_token = mesh.paths.metrics_token_file
    if metrics_token.exists():
        forbidden.append(metrics_token.read_text().strip())
    for secret in forbidden:
        holders = [name for name, data in files.items() if secret.encode() in data]
        assert not holders, f"{secret[:12]}... is in the archive's {holders}"
        assert secret.encode() not in raw


def test_a_failing_collector_is_recorded_not_fatal(mesh: Mesh, tmp_path: Path) -> None:
    books_and_web(mesh)
    mesh.paths.log_file.unlink()  # the control plane's log collector must fail
    target = tmp_path / "report.tar.gz"
    out = mesh.cli("bug-report", "--output", str(target), timeout=180).stdout
    assert "not collected: controlplane/controlplane.log" in out
    with tarfile.open(target, "r:gz") as archive:
        names = {m.name.removeprefix("tulle-bug-report/") for m in archive.getmembers()}
        manifest = json.loads(_read(archive, archive.getmember(
            "tulle-bug-report/manifest.json")))
    failed = {f["file"]: f["error"] for f in manifest["files"] if not f["ok"]}
    assert "controlplane/controlplane.log" in failed
    assert "No such file" in failed["controlplane/controlplane.log"]
    assert "controlplane/controlplane.log" not in names
    assert {"resources.json", "workloads.json", "proxies/web-1.default/config_dump.json",
            "proxies/books-1.default/envoy.log"} <= names, failed
