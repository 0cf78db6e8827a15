"""The control plane on etcd (`tulle up --store etcd://...`): resources, history and
workloads live in etcd, not in the state directory; a restart without --store opens etcd
again; `tulle check` checks etcd; bad --store values and a lost etcd are clear errors that
change nothing."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_identity import inbound_port
from tests.e2e.test_revoke import answers, current_identity
from tests.support.etcd import etcd_cluster, etcd_server
from tests.support.load import Load
from tests.support.mesh import TULLE, Mesh, wait_for
from tests.support.pki import Identity, https_get
from tests.support.ports import free_port
from tests.support.traffic import Traffic

pytestmark = pytest.mark.envoy

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
    timeouts: {request: 3s}
"""


@pytest.fixture
def etcd() -> Iterator[str]:
    with etcd_server() as url:
        yield url


Replicas = Callable[..., tuple[Mesh, Mesh]]


@pytest.fixture
def replicas(tmp_path: Path, etcd: str, sealing_key: str
             ) -> Iterator[Callable[..., tuple[Mesh, Mesh]]]:
    """Starts replicas A and B on the test's etcd (``first``: which starts first; a
    workload's bootstrap lists the replicas already announced); closes them at the end."""
    made: list[Mesh] = []

    def start(first: str = "a", *extra: str) -> tuple[Mesh, Mesh]:
        a, b = Mesh(tmp_path / "a"), Mesh(tmp_path / "b")
        made.extend((b, a))
        for mesh in (a, b) if first == "a" else (b, a):
            mesh.up("--store", "etcd://" + etcd.removeprefix("http://"),
                    "--ca-encryption-key", sealing_key, *extra)
        return a, b

    yield start
    for mesh in made:
        mesh.close()


@pytest.fixture
def sealing_key(tmp_path: Path) -> str:
    """The operator's key for the CA's files in etcd (`openssl rand -base64 32`)."""
    path = tmp_path / "ca-encryption.key"
    path.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return str(path)


def test_a_control_plane_on_etcd_keeps_everything_there(tmp_path: Path, etcd: str,
                                                        sealing_key: str) -> None:
    mesh = Mesh(tmp_path / "cp")
    store = "etcd://" + etcd.removeprefix("http://")
    try:
        mesh.up("--store", store, "--ca-encryption-key", sealing_key)
        books = mesh.run("books", name="books-1")
        web = mesh.run("web", name="web-1")
        mesh.cli("apply", "-f", "-", stdin=ROUTE)
        mesh.sync()
        assert mesh.call(web, "http://books/")["status"] == 200
        assert not mesh.paths.database.exists(), "nothing in SQLite: the store is etcd"

        mesh.cli("down")
        mesh.up()  # no --store: the last run's store, etcd
        assert json.loads(mesh.cli("get", "httproutes", "books", "-o", "json").stdout)[
            "spec"]["rules"][0]["timeouts"] == {"request": "3s"}
        history = json.loads(mesh.cli("history", "-o", "json").stdout)
        assert any(c["kind"] == "HTTPRoute" and c["name"] == "books"
                   for c in history), history
        mesh.sync()
        assert mesh.call(web, "http://books/")["status"] == 200
        assert books.process.poll() is None

        checks = {c["id"]: c for c in json.loads(
            mesh.cli("check", "-o", "json", check=False).stdout)["checks"]}
        assert checks["store-integrity"]["status"] == "ok", checks["store-integrity"]
        assert "etcd answers" in checks["store-integrity"]["message"]
        assert checks["store-readable"]["status"] == "ok", checks["store-readable"]
        assert not mesh.paths.database.exists()
        # The CA is in etcd, sealed: no key in clear there, and none in the state directory.
        raw = _etcd_values(etcd, "/tulle/ca/")
        assert raw and not any(b"PRIVATE KEY" in v for v in raw.values()), list(raw)
        assert not any(mesh.paths.ca_dir.glob("*.key")) or {
            p.name for p in mesh.paths.ca_dir.glob("*.key")} == {"controlplane.key"}
    finally:
        mesh.close()


def _etcd_values(url: str, prefix: str) -> dict[bytes, bytes]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode()}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "/v3/kv/range", data=body),
                                timeout=5) as answer:
        kvs = json.loads(answer.read()).get("kvs", [])
    return {base64.b64decode(kv["key"]): base64.b64decode(kv["value"]) for kv in kvs}


def test_bad_store_values_change_nothing(tmp_path: Path, sealing_key: str) -> None:
    mesh = Mesh(tmp_path)
    try:
        for store, says in (("etcd://127.0.0.1:2379", "needs a key to encrypt the CA"),
                            ("etcd://10.1.2.3:2379", "not a loopback address"),
                            ("mysql://db", "unknown store scheme"),
                            ("etcds://127.0.0.1:2379", "needs --etcd-ca")):
            result = mesh.cli("up", *mesh.port_flags(), "--store", store, check=False)
            assert result.returncode == 2, result
            assert says in result.stderr and "hint:" in result.stderr, result.stderr
            assert not mesh.paths.endpoint_file.exists()
        # etcd not running: the control plane does not start, and says where it looked.
        dead = f"etcd://127.0.0.1:{free_port()}"
        result = mesh.cli("up", *mesh.port_flags(), "--store", dead, "--ca-encryption-key",
                          sealing_key, check=False, timeout=60)
        assert result.returncode != 0
        assert "no etcd endpoint answered" in result.stderr + result.stdout
        assert not (mesh.state_dir / "store.json").exists(), "a store never opened is not kept"
    finally:
        mesh.close()


FAULT = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-teapot}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection: {abort: {httpStatus: 418, percent: 100}}
"""


def test_a_change_applied_on_one_replica_reaches_the_proxies_of_another(replicas: Replicas) -> None:
    """Two control planes on one etcd: workloads run on B; a policy applied on A and then
    deleted on A reaches B's proxies each time (B watches etcd), and B's own workloads are
    B's alone (A neither lists nor expires them)."""
    a, b = replicas()
    assert _bundle(a) == _bundle(b)  # one CA for both: the same trust bundle
    b.run("books", name="books-1")
    web = b.run("web", name="web-1")
    b.sync()
    assert b.call(web, "http://books/")["status"] == 200

    a.cli("apply", "-f", "-", stdin=FAULT)
    wait_for("A's policy to reach web-1 through B",
             lambda: b.call(web, "http://books/")["status"] == 418, 20)
    listed = json.loads(b.cli("get", "trafficpolicies", "-o", "json").stdout)
    assert [p["metadata"]["name"] for p in listed["items"]] == ["books-teapot"], listed

    a.cli("delete", "trafficpolicy", "books-teapot")
    wait_for("the delete on A to reach web-1 through B",
             lambda: b.call(web, "http://books/")["status"] == 200, 20)
    # Both replicas list both workloads; A says they are registered with B.
    on_a = json.loads(a.cli("get", "workloads", "-o", "json").stdout)
    on_b = json.loads(b.cli("get", "workloads", "-o", "json").stdout)
    assert {w["name"] for w in on_a} == {w["name"] for w in on_b} == {"books-1", "web-1"}
    assert all(w["replica"] for w in on_a) and not any(w["replica"] for w in on_b)
    assert "replica " in a.cli("get", "workloads").stdout


def test_a_root_rotation_on_one_replica_carries_the_workloads_of_both(
        replicas: Replicas) -> None:
    """Rotate the root on A while web-1 (registered with A) calls books-1 (registered with
    B) all along. B follows each stage from etcd, its agent renews from the new issuer, and
    each stage waits for B's proxies too: no call fails, and at the end both replicas hand
    out the new root alone and both workloads hold certificates from the new issuer."""
    a, b = replicas()
    b.run("books", name="books-1")
    web = a.run("web", name="web-1")
    a.sync()
    b.sync()
    before = _bundle(a)
    traffic = Traffic(a, web, "http://books/")
    traffic.start()
    try:
        wait_for("steady traffic", lambda: traffic.ok >= 20)
        rotated = json.loads(a.cli("certs", "rotate", "root", "-o", "json",
                                   timeout=300).stdout)
        ok_after = traffic.ok
        wait_for("calls go on after the rotation", lambda: traffic.ok >= ok_after + 20)
    finally:
        traffic.stop()
    assert traffic.failures == [], traffic.failures[:5]
    assert [s["stage"] for s in rotated["stages"]] == [1, 2, 3]
    assert all("1 other replica(s) followed" in s["detail"] for s in rotated["stages"]), rotated
    assert _bundle(a) == _bundle(b) != before
    assert len(rotated["anchors"]) == 1  # the new root alone
    for mesh, node in ((b, "books-1.default"), (a, "web-1.default")):
        held = {c["node"]: c for c in mesh.api.get("/v1/identity/status")["workloads"]}
        assert held[node]["issuerId"] == rotated["issuer"], (node, held[node])
        assert held[node]["chainsToBundle"]


def _bundle(mesh: Mesh) -> str:
    return str(mesh.api.get("/v1/health/identity")["anchors"])


def test_a_replica_with_another_sealing_key_refuses_to_start(tmp_path: Path, etcd: str,
                                                             sealing_key: str) -> None:
    store = "etcd://" + etcd.removeprefix("http://")
    a, b = Mesh(tmp_path / "a"), Mesh(tmp_path / "b")
    other = tmp_path / "other.key"
    other.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    try:
        a.up("--store", store, "--ca-encryption-key", sealing_key)
        result = b.cli("up", *b.port_flags(), "--store", store, "--ca-encryption-key",
                       str(other), check=False, timeout=60)
        assert result.returncode != 0
        assert "not the one it was sealed with" in result.stderr + result.stdout
    finally:
        b.close()
        a.close()


def test_workloads_registered_with_two_replicas_call_each_other(replicas: Replicas) -> None:
    """books-1 registers with A, web-1 with B: B's proxy gets books' endpoint from etcd, and
    the call is mutual TLS under the one shared CA. When books-1 stops, A deletes its
    registration and B's proxy drops the endpoint."""
    a, b = replicas()
    books = a.run("books", name="books-1")
    web = b.run("web", name="web-1")
    wait_for("books-1's endpoint in web-1's sidecar (registered with the other replica)",
             lambda: b.endpoints("web-1", "books"), 20)
    assert b.call(web, "http://books/")["status"] == 200
    stats = a.admin("books-1", "stats?filter=ssl.handshake")
    assert any(int(v) > 0 for k, v in (x.split(": ") for x in stats.splitlines()
                                       if "listener" in x and ": " in x)), stats
    books.stop()
    wait_for("books-1's endpoint gone from web-1's sidecar",
             lambda: not b.endpoints("web-1", "books"), 20)


def test_a_revocation_on_one_replica_reaches_the_proxies_of_another(replicas: Replicas) -> None:
    """web-1 registers with A, books-1 with B. Revoking web-1 on B says A holds it; on A it
    works, and B follows the CA's state in etcd: books-1's sidecar (B's proxy) refuses
    web-1's certificate and drains its connection, while web-2 goes on."""
    a, b = replicas()
    b.run("books", name="books-1")
    web1, web2 = a.run("web", name="web-1"), a.run("web", name="web-2")
    wait_for("books-1's endpoint in web-1's sidecar (registered with the other replica)",
             lambda: a.endpoints("web-1", "books") and a.endpoints("web-2", "books"), 20)
    assert a.call(web1, "http://books/")["status"] == 200
    stolen = current_identity(a, "web-1")
    port = inbound_port(b, "books-1")
    assert https_get(port, "/before", identity=stolen)[0] == 200

    elsewhere = b.cli("workload", "revoke", "web-1", check=False)
    assert elsewhere.returncode != 0 and "registered with replica" in elsewhere.stderr
    a.cli("workload", "revoke", "web-1")
    wait_for("books-1's sidecar on B to refuse web-1's revoked certificate",
             lambda: _refuses(port, stolen), 20)
    wait_for("web-1's calls to books to stop", lambda: not answers(a, web1), 20)
    assert answers(a, web2)


def _refuses(port: int, identity: Identity) -> bool:
    try:
        https_get(port, "/after", identity=identity)
    except (ssl.SSLError, OSError):
        return True
    return False


def test_when_a_replica_dies_its_agents_and_proxies_move_to_another(replicas: Replicas) -> None:
    """kill -9 the replica books-1 and web-1 registered with: calls between them go on
    without a failure (the sidecars keep their config), the agents register with the other
    replica, and the sidecars' ADS streams follow: a change applied there reaches them."""
    a, b = replicas(first="b")
    a.run("books", name="books-1")
    web = a.run("web", name="web-1")
    a.sync()
    traffic = Traffic(a, web, "http://books/")
    traffic.start()
    try:
        wait_for("steady traffic", lambda: traffic.ok >= 20)
        os.kill(a.status()["pid"], signal.SIGKILL)
        killed = time.monotonic()

        def moved() -> set[str] | None:
            names = {w["name"] for w in json.loads(
                b.cli("get", "workloads", "-o", "json").stdout)}
            return names if names == {"books-1", "web-1"} else None

        wait_for("both agents registered with the other replica", moved, 30)
        print(f"measured: agents moved {time.monotonic() - killed:.1f}s after the kill")
        ok_before = traffic.ok
        wait_for("calls go on", lambda: traffic.ok >= ok_before + 20)
    finally:
        traffic.stop()
    assert traffic.failures == [], traffic.failures[:5]
    b.cli("apply", "-f", "-", stdin=FAULT)
    wait_for("B's policy to reach web-1, whose ADS stream moved to B",
             lambda: b.call(web, "http://books/")["status"] == 418, 30)
    print(f"measured: B's change reached web-1 {time.monotonic() - killed:.1f}s after "
          "the kill")


def test_every_replica_shows_the_whole_meshs_telemetry(
        replicas: Replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    """web-1 reports to B, books-1 to A: stat on either replica counts both sides of the
    calls; with A frozen, B's figures say that A's reports are missing."""
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")
    a, b = replicas()
    a.run("books", name="books-1")
    web = b.run("web", name="web-1")
    wait_for("books-1's endpoint on B", lambda: b.endpoints("web-1", "books"), 20)
    for _ in range(10):
        assert b.call(web, "http://books/")["status"] == 200

    def both_sides(mesh: Mesh) -> dict[str, int] | None:
        rows = json.loads(mesh.cli("stat", "workloads", "-o", "json").stdout)["workloads"]
        seen = {r["name"]: r["requests"] for r in rows}
        return seen if seen.get("books-1", 0) >= 10 and "web-1" in seen else None

    wait_for("A to count books-1's answers and know web-1", lambda: both_sides(a), 20)
    wait_for("B to count books-1's answers (reported to A)", lambda: both_sides(b), 20)
    pid = a.status()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = b.cli("stat", "services", "-o", "json", timeout=60)
        missing = json.loads(frozen.stdout).get("replicasMissing", [])
        assert len(missing) == 1, frozen.stdout
        table = b.cli("stat", "services", timeout=60).stdout
        assert "did not answer" in table and "missing from these figures" in table
        report = json.loads(b.cli("diagnose", "-o", "json", check=False,
                                  timeout=60).stdout)
        assert report["gathered"]["replicasMissing"], report["gathered"]
        assert any(f["code"] == "TUL1091" for f in report["findings"]), report["findings"]
    finally:
        os.kill(pid, signal.SIGCONT)



def test_check_names_a_replica_that_does_not_answer_and_etcd_quorum(replicas: Replicas) -> None:
    a, b = replicas()

    def checks() -> dict[str, Any]:
        result = b.cli("check", "-o", "json", check=False, timeout=60)
        return {c["id"]: c for c in json.loads(result.stdout)["checks"]}

    healthy = checks()
    assert healthy["replicas-answering"]["status"] == "ok", healthy["replicas-answering"]
    assert "2 replicas answer" in healthy["replicas-answering"]["message"]
    assert healthy["etcd-quorum"]["status"] == "ok"
    assert healthy["replicas-clock"]["status"] == "ok"
    pid = a.status()["pid"]
    os.kill(pid, signal.SIGSTOP)  # frozen: still announced, never answers
    try:
        frozen = checks()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert frozen["replicas-answering"]["status"] == "failed"
    assert "does not answer" in frozen["replicas-answering"]["message"]
    assert "1 of 2 announced answer" in frozen["replicas-answering"]["message"]


POLICY = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-timeouts}
spec:
  targetRefs: [{kind: Service, name: books}]
  timeouts: {connect: 2s}
"""


def test_etcd_members_lost_one_then_quorum(tmp_path: Path, sealing_key: str) -> None:
    """A three-member etcd: one member down changes nothing a user sees but a warning; with
    quorum lost, proxies keep serving, an apply and a read of the history fail with a clear
    error while the control plane goes on answering, diagnose says it could not read the
    history, and once quorum is back nothing of the apply was written."""
    with etcd_cluster(3) as members:
        store = "etcd://" + ",".join(m.url.removeprefix("http://") for m in members)
        mesh = Mesh(tmp_path / "cp")
        try:
            mesh.up("--store", store, "--ca-encryption-key", sealing_key)
            mesh.run("books", name="books-1")
            web = mesh.run("web", name="web-1")
            mesh.sync()
            members[0].kill()
            mesh.cli("apply", "-f", "-", stdin=FAULT)  # on the two members left
            wait_for("the policy through two members",
                     lambda: mesh.call(web, "http://books/")["status"] == 418, 20)
            checks = {c["id"]: c for c in json.loads(
                mesh.cli("check", "-o", "json", check=False, timeout=60).stdout)["checks"]}
            assert checks["etcd-quorum"]["status"] == "warning", checks["etcd-quorum"]
            revision = _newest_revision(mesh)

            members[1].kill()  # quorum lost
            # While the apply waits on etcd, the control plane goes on answering.
            applying = subprocess.Popen(
                [*TULLE, "--state-dir", str(mesh.state_dir), "apply", "-f", "-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=mesh.env())
            assert applying.stdin is not None
            applying.stdin.write(POLICY)
            applying.stdin.close()
            wait_for("the apply to reach the control plane",
                     lambda: "books-timeouts" not in mesh.cli("get", "trafficpolicies").stdout
                     and applying.poll() is None)
            assert mesh.status()["workloads"] == 2 and applying.poll() is None
            applying.wait(90)
            assert applying.stderr is not None
            stderr = applying.stderr.read()
            assert applying.returncode != 0
            assert "etcd" in stderr and "hint:" in stderr, stderr
            assert mesh.call(web, "http://books/")["status"] == 418  # serving its last config
            # So does `tulle history`'s read (in a thread: the control plane answers
            # meanwhile), and diagnose judges the rest and says what it could not read.
            history = subprocess.Popen(
                [*TULLE, "--state-dir", str(mesh.state_dir), "history"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mesh.env())
            wait_for("history to ask", lambda: mesh.status()["workloads"] == 2)
            assert history.poll() is None, "the read of the history still waits on etcd"
            _, said = history.communicate(timeout=90)
            assert history.returncode != 0 and "etcd" in said, said
            found = mesh.cli("diagnose", check=False, timeout=120)
            assert "  - the change history: " in found.stdout, found  # what it could not read
            assert "TUL1090" not in found.stdout, "not frozen: waiting on etcd"
            checks = {c["id"]: c for c in json.loads(
                mesh.cli("check", "-o", "json", check=False, timeout=60).stdout)["checks"]}
            assert checks["etcd-quorum"]["status"] == "failed", checks["etcd-quorum"]
            answering = checks["replicas-answering"]
            assert answering["status"] == "ok", answering["message"]

            members[1].restart()
            assert _newest_revision(mesh) == revision
            absent = mesh.cli("get", "trafficpolicies", "books-timeouts", check=False)
            assert absent.returncode != 0 and "not found" in absent.stderr
        finally:
            mesh.close()


def test_when_a_replica_freezes_its_agents_and_proxies_move_to_another(replicas: Replicas) -> None:
    """SIGSTOP the replica two workloads use: its port still accepts, but it never answers.
    The agents give it up after three missed heartbeats and register with the other replica;
    the sidecars' gRPC health check of their xDS cluster fails, and they follow."""
    a, b = replicas(first="b")
    pid = 0
    try:
        a.run("books", name="books-1")
        web = a.run("web", name="web-1")
        a.sync()
        pid = a.status()["pid"]
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()

        def moved() -> bool:
            names = {w["name"] for w in json.loads(b.cli("get", "workloads", "-o", "json").stdout)
                     if not w["replica"]}
            return names == {"books-1", "web-1"}

        wait_for("both agents registered with the other replica", moved, 60)
        print(f"measured: agents moved {time.monotonic() - frozen:.1f}s after the freeze")
        assert b.call(web, "http://books/")["status"] == 200
        b.cli("apply", "-f", "-", stdin=FAULT)
        wait_for("B's policy to reach web-1, whose ADS stream left the frozen replica",
                 lambda: b.call(web, "http://books/")["status"] == 418, 60)
        print(f"measured: B's change reached web-1 {time.monotonic() - frozen:.1f}s after "
              "the freeze")
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)


def test_one_replica_compacts_and_a_frozen_one_gives_the_work_up(replicas: Replicas) -> None:
    """Compaction is singleton work: exactly one replica holds its election and trims the
    history to the newest revisions. Freeze that replica (SIGSTOP): its lease lapses, the
    other takes the work over and goes on trimming. When the frozen one wakes up, it does
    not think it still runs it."""
    a, b = replicas("a", "--history-keep", "3", "--compact-every", "1")

    def runner() -> tuple[Mesh, Mesh] | None:
        running = [m for m in (a, b) if "compaction" in m.status()["runs"]]
        if len(running) > 1:
            raise AssertionError("two replicas run the compaction at once")
        return (running[0], b if running[0] is a else a) if running else None

    leader, other = wait_for("one replica to run the compaction", runner, 15)
    for n in range(6):
        other.cli("apply", "-f", "-", stdin=SERVICE.format(name=f"s{n}"))

    def kept() -> list[int]:
        return sorted({c["revision"] for c in json.loads(
            b.cli("history", "-o", "json").stdout)})

    wait_for("the history to keep the newest 3 revisions", lambda: kept() == [4, 5, 6], 15)
    refused = a.cli("rollback", "1", "--dry-run", check=False)
    assert refused.returncode != 0 and "older than the kept history" in refused.stderr
    assert f"compaction runs on {_replica_id(leader)}" in _replicas_check(a)["message"]

    pid = leader.status()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        wait_for("the other replica to take the compaction over",
                 lambda: "compaction" in other.status()["runs"], 30)
        print(f"measured: compaction taken over {time.monotonic() - frozen:.1f}s after the "
              "freeze")
        for n in range(6, 9):
            other.cli("apply", "-f", "-", stdin=SERVICE.format(name=f"s{n}"))
        wait_for("the new holder to trim", lambda: kept() == [7, 8, 9], 15)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("the woken replica to answer", lambda: leader.status() is not None, 15)
    time.sleep(3)  # its next election check, and its lease renewal, have run
    assert "compaction" not in leader.status()["runs"]
    assert "compaction" in other.status()["runs"]
    log = (leader.paths.root / "controlplane.log").read_text()
    assert "stops the work now" in log or "held by" in log, log[-3000:]


SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {{name: {name}}}
"""


def _replicas_check(mesh: Mesh) -> dict[str, Any]:
    checks = json.loads(mesh.cli("check", "-o", "json", check=False).stdout)["checks"]
    found: dict[str, Any] = {c["id"]: c for c in checks}["replicas-answering"]
    return found


def _replica_id(mesh: Mesh) -> str:
    return str(_replicas_check(mesh)["details"]["self"])


RETRYING = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
    retry: {attempts: 3, codes: [502, 503]}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-applied-on, value: %s}]}
"""


def test_three_replicas_on_three_etcd_members_under_load(tmp_path: Path,
                                                        sealing_key: str) -> None:
    """Three replicas on a three-member etcd. web-1 (registered with A) sends 240 requests a
    second to books-1 (with B) and books-2 (with C), retries on. Then, one after the other:
    kill -9 A; kill one etcd member; kill a second one (quorum lost), and bring it back. No
    request fails. web-1's agent and sidecar move to another replica, which then serves it a
    change; with two members an apply works; without quorum an apply fails with a clear
    error and nothing of it is written."""
    with etcd_cluster(3) as members:
        store = "etcd://" + ",".join(m.url.removeprefix("http://") for m in members)
        a, b, c = (Mesh(tmp_path / name) for name in "abc")
        load: Load | None = None
        try:
            for mesh in (c, b, a):  # A last: web-1's greeting then lists B and C
                mesh.up("--store", store, "--ca-encryption-key", sealing_key)
            port = free_port()
            b.run("books", name="books-1")
            c.run("books", name="books-2")
            a.cli("apply", "-f", "-", stdin=RETRYING % "a")
            web = a.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
            a.wait_endpoints("web-1", "books", {"books-1", "books-2"})
            load = Load(port).start()
            wait_for("steady load", lambda: load is not None and load.result.ok >= 200)

            os.kill(a.status()["pid"], signal.SIGKILL)
            agent_log = a.state_dir / "workloads" / "web-1.default" / "agent.log"
            wait_for("web-1's agent to move to another replica",
                     lambda: "moved to the replica" in agent_log.read_text(), 30)
            b.cli("apply", "-f", "-", stdin=RETRYING % "b")
            wait_for("B's change to reach web-1's sidecar, whose stream left A", lambda: (
                a.call(web, "http://books/")["body"]["headers"].get("x-applied-on") == "b"),
                30)

            members[0].kill()
            c.cli("apply", "-f", "-", stdin=RETRYING % "c")  # two members: it works
            wait_for("C's change through two members", lambda: (
                a.call(web, "http://books/")["body"]["headers"].get("x-applied-on") == "c"),
                30)
            revision = _newest_revision(c)
            members[1].kill()  # quorum lost
            refused = c.cli("apply", "-f", "-", stdin=POLICY, check=False, timeout=120)
            assert refused.returncode != 0 and "etcd" in refused.stderr, refused
            ok_before = load.result.ok
            wait_for("the proxies to keep serving without quorum",
                     lambda: load is not None and load.result.ok >= ok_before + 200)
            members[1].restart()
            wait_for("the store to answer again", lambda: c.cli(
                "get", "trafficpolicies", check=False).returncode == 0, 30)
            absent = c.cli("get", "trafficpolicies", "books-timeouts", check=False)
            assert absent.returncode != 0 and "not found" in absent.stderr
            assert _newest_revision(c) == revision  # nothing of the refused apply
            ok_before = load.result.ok
            wait_for("and after", lambda: load is not None and load.result.ok >= ok_before + 200)
        finally:
            result = load.stop() if load is not None else None
            for mesh in (a, b, c):
                mesh.close()
        assert result is not None
        result.report("240 req/s through a replica kill, an etcd member lost, then quorum")
        assert result.failures == [], result.failures[:5]



def _newest_revision(mesh: Mesh) -> int:
    """Read from the store now (status shows the revision as last read, seconds old)."""
    return max(c["revision"] for c in json.loads(mesh.cli("history", "-o", "json").stdout))
