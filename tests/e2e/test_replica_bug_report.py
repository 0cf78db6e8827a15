"""`tulle bug-report` on replicas of a shared store: besides what the replica it asks holds, the
archive holds each other replica's own evidence (its status, the end of its log, its proxies'
streams and refusals, identity), which live on that replica's host and nowhere in etcd; and
no secret of theirs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.e2e.test_etcd_store import Replicas, etcd, replicas, sealing_key  # noqa: F401

pytestmark = pytest.mark.envoy


def test_a_bug_report_holds_every_replicas_own_evidence(replicas: Replicas,  # noqa: F811
                                                        tmp_path: Path) -> None:
    a, b = replicas()
    b.run("books", name="books-1")  # registered with B: its ADS stream is B's alone
    b.sync()
    b_pid = b.status()["pid"]
    target = tmp_path / "report.tar.gz"
    summary = json.loads(a.cli("bug-report", "--output", str(target), "-o", "json",
                               timeout=180).stdout)
    with tarfile.open(target) as archive:
        files = {m.name.removeprefix("tulle-bug-report/"): archive.extractfile(m).read()
                 for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]
    health = json.loads(files["replicas/health.json"])
    assert [r["self"] for r in health["replicas"]].count(False) == 1
    [where] = {name.rsplit("/", 1)[0] for name in files
               if name.startswith("replicas/") and name.endswith("/status.json")}
    assert json.loads(files[f"{where}/status.json"])["pid"] == b_pid
    proxies = json.loads(files[f"{where}/proxies.json"])
    assert [p["node"] for p in proxies] == ["books-1.default"]
    assert f"(pid {b_pid}) ready" in files[f"{where}/controlplane.log"].decode()
    for name in ("xds-nacks.json", "xds-stream-events.json", "identity.json"):
        assert f"{where}/{name}" in files, sorted(files)
    # The replica asked has no proxy: B's is in the archive only through B.
    assert json.loads(files["proxies/status.json"]) == []
    assert not [f for f in summary["failed"] if f["file"].startswith("replicas/")], summary
    # No secret: the replicas' shared API token is nowhere, not even in B's log.
    token = a.paths.token_file.read_text().strip().encode()
    assert not [name for name, content in files.items() if token in content]
