"""Workloads on other hosts: a host is a network namespace joined by a veth pair; its agent
joins with a join token and the CA's fingerprint, and nothing from the control plane's state
directory. Traffic goes only to the namespaces' addresses."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import netns
from tests.support.etcd import etcd_server
from tests.support.mesh import ECHO_APP, TULLE, Mesh, wait_for
from tests.support.ports import free_port
from tulle.identity import xdsclient

pytestmark = pytest.mark.envoy


@pytest.fixture
def other_host() -> Iterator[netns.Host]:
    if (why := netns.available()) is not None:
        pytest.skip(why)
    with netns.host() as made:
        yield made


@pytest.fixture
def listening(tmp_path: Path, other_host: netns.Host) -> Iterator[Mesh]:
    """A control plane whose agents' ports listen on the link to ``other_host``."""
    mesh = Mesh(tmp_path / "a")
    mesh.up("--listen", other_host.local)
    try:
        yield mesh
    finally:
        mesh.close()


class Joiner:
    """`tulle run` on another host, with its own state directory there."""

    def __init__(self, mesh: Mesh, host: netns.Host, root: Path) -> None:
        self.mesh, self.host, self.root = mesh, host, root
        root.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []

    def token(self, service: str, *extra: str) -> dict[str, Any]:
        made: dict[str, Any] = json.loads(self.mesh.cli(
            "token", "create", "--service", service, *extra, "-o", "json").stdout)
        return made

    def run(self, name: str, service: str, token: str, fingerprint: str, url: str,
            port: int | None = None, *, clock: str = "") -> tuple[subprocess.Popen[bytes], Path]:
        """``clock``: the host's clock is off by this much ("+40s"): the agent and its
        application run under libfaketime. Envoy hangs at start under it, so it is started
        through --envoy-binary, a wrapper that drops libfaketime: it keeps the real clock."""
        log = self.root / f"{name}.out"
        args = [*(("faketime", "-f", clock) if clock else ()), *TULLE,
                "--state-dir", str(self.root / "state"), "run", "--control-plane", url,
                "--ca-fingerprint", fingerprint, "--service", service, "--name", name]
        if clock:
            args += ["--envoy-binary", str(self._envoy_on_real_time())]
        if port is not None:
            args += ["--port", str(port), "--", sys.executable, str(ECHO_APP), str(port)]
        else:
            args += ["--", sys.executable, "-c", "import time; time.sleep(60)"]
        env = {**self.mesh.env(), "TULLE_JOIN_TOKEN": token}
        with log.open("wb") as out:
            process = subprocess.Popen(self.host.command(*args), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, env=env)
        self.processes.append(process)
        return process, log

    def web_calling_books(self) -> tuple[subprocess.Popen[bytes], Path, int]:
        """web-1 joined from this host with a new token, once it calls books across the
        hosts: its `tulle run`, that one's output, and its application's port."""
        made = self.token("web")
        port = free_port()
        process, log = self.run("web-1", "web", made["token"], made["caFingerprint"],
                                made["controlPlane"], port)
        wait_for("web-1 to call books across the hosts",
                 lambda: _calls(self, port) == 200, timeout=40)
        return process, log, port

    def _envoy_on_real_time(self) -> Path:
        real = shutil.which("envoy", path=str(Path(sys.executable).parent)) or "envoy"
        wrapper = self.root / "envoy-real-time"
        wrapper.write_text(f"#!/bin/sh\nunset LD_PRELOAD FAKETIME\nexec {real} \"$@\"\n")
        wrapper.chmod(0o755)
        return wrapper

    def refused(self, service: str, token: str, fingerprint: str, url: str) -> str:
        """The output of an agent that must not get in (it exits non-zero)."""
        process, log = self.run(f"{service}-x{len(self.processes)}", service, token,
                                fingerprint, url)
        assert process.wait(timeout=30) != 0, log.read_text()
        return log.read_text()

    def call(self, port: int, url: str) -> dict[str, Any]:
        """The application on the other host fetches ``url`` through its sidecar."""
        script = ("import json, sys, urllib.parse, urllib.request; q = urllib.parse.urlencode("
                  "{'url': sys.argv[2]}); print(urllib.request.urlopen("
                  "f'http://127.0.0.1:{sys.argv[1]}/call?{q}', timeout=10).read().decode())")
        out = subprocess.run(self.host.command(sys.executable, "-c", script, str(port), url),
                             capture_output=True, text=True, timeout=20, check=True)
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def close(self) -> None:
        # The whole tree: under faketime, the agent and its Envoy outlived a terminated
        # `tulle run` and kept running after the test (seen on two suite runs).
        tree = [child for process in self.processes if process.poll() is None
                for child in _descendants(process.pid)]
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        for straggler in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                straggler.kill()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_a_workload_on_another_host_joins_and_calls_by_name_over_mtls(
        listening: Mesh, other_host: netns.Host, tmp_path: Path) -> None:
    mesh = listening
    status = mesh.status()
    assert status["xdsAddress"].startswith(f"{other_host.local}:") and status["xdsTls"]
    books = mesh.run("books", name="books-1")  # on this host, over the TLS xDS too
    joiner = Joiner(mesh, other_host, tmp_path / "b")
    try:
        made = joiner.token("web")
        assert made["controlPlane"] == f"https://{other_host.local}:{mesh.identity_port}"
        port = free_port()
        joiner.run("web-1", "web", made["token"], made["caFingerprint"],
                   made["controlPlane"], port)
        web = wait_for("web-1 ready", lambda: next(
            (w for w in mesh.api.get("/v1/workloads")
             if w["name"] == "web-1" and w["state"] == "ready"), None), timeout=40)
        assert web["address"] == other_host.peer

        # Host B -> host A, by name, through both sidecars: the callee sees B's identity.
        answer = wait_for("web-1 reaches books", lambda: (
            r if (r := joiner.call(port, "http://books/from-b"))["status"] == 200 else None),
            timeout=20)
        assert answer["body"]["workload"] == "books-1"
        assert "URI=spiffe://tulle.local/ns/default/sa/web" in answer["body"]["headers"][
            "x-forwarded-client-cert"]
        # Host A -> host B, to B's routable address, mTLS.
        back = wait_for("books-1 reaches web", lambda: (
            r if (r := mesh.call(books, "http://web/from-a"))["status"] == 200 else None))
        assert back["body"]["workload"] == "web-1"
        assert "URI=spiffe://tulle.local/ns/default/sa/books" in back["body"]["headers"][
            "x-forwarded-client-cert"]
        # The control plane reads the remote sidecar through its agent (TLS, both ways
        # authenticated), and this host's through theirs: diagnose sees every proxy fresh.
        diagnosis = json.loads(mesh.cli("diagnose", "-o", "json").stdout)
        assert diagnosis["gathered"]["proxiesFailed"] == [], diagnosis["gathered"]
        assert diagnosis["gathered"]["proxiesRead"] == 2
        assert not [f for f in diagnosis["findings"] if f["severity"] in ("error", "critical")]
        clusters = mesh.cli("proxy-config", "clusters", "web-1").stdout
        assert "books" in clusters
        listed = {t["id"]: t for t in json.loads(
            mesh.cli("token", "list", "-o", "json").stdout)["tokens"]}
        assert listed[made["id"]]["state"] == "used"
        assert listed[made["id"]]["usedBy"] == "web-1.default"

        # The same token again: refused, and nothing registered.
        replayed = joiner.refused("web", made["token"], made["caFingerprint"],
                                  made["controlPlane"])
        assert "was already used" in replayed
        # A token for another service.
        other = joiner.token("reviews")
        assert "is for service reviews" in joiner.refused(
            "web", other["token"], other["caFingerprint"], other["controlPlane"])
        # An expired one.
        short = joiner.token("web", "--ttl", "1s")
        time.sleep(1.2)
        assert "expired" in joiner.refused("web", short["token"], short["caFingerprint"],
                                           short["controlPlane"])
        # A control plane that does not hold the pinned CA (a wrong fingerprint): nothing is
        # sent, and the token is not spent.
        fresh = joiner.token("web")
        wrong = "sha256:" + "0" * 64
        assert "does not hold the CA" in joiner.refused("web", fresh["token"], wrong,
                                                        fresh["controlPlane"])
        states = {t["id"]: t["state"] for t in json.loads(
            mesh.cli("token", "list", "-o", "json").stdout)["tokens"]}
        assert states[fresh["id"]] == "valid" and states[other["id"]] == "valid"
        names = {w["name"] for w in mesh.api.get("/v1/workloads")}
        assert names == {"books-1", "web-1"}
        # `tulle check` names the host that never got in: its token expired unused.
        result = mesh.cli("check", "-o", "json", check=False)
        tokens = {c["id"]: c for c in json.loads(result.stdout)["checks"]}[
            "identity-join-tokens"]
        assert tokens["status"] == "warning", json.dumps(tokens, indent=1)
        assert f"join token {short['id']} for web.default expired unused" in tokens["message"]
        assert made["id"] not in tokens["message"], "a used token is not news"
    finally:
        joiner.close()


def test_the_identity_port_refuses_strangers_before_reading(
        listening: Mesh, other_host: netns.Host) -> None:
    mesh = listening
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://{other_host.local}:{mesh.identity_port}"
    for path, headers in (("/v1/agent/sessions", {}),
                          ("/v1/agent/sessions", {"Authorization": "Bearer tj1.0123456789ab.x"}),
                          ("/v1/agent/workloads/web-1.default/state", {}),
                          ("/v1/agent/workloads/web-1.default/telemetry", {})):
        request = urllib.request.Request(url + path, method="POST", data=b"{" * 100,
                                         headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5, context=context)
        assert refused.value.code == 403, path


def test_check_names_a_host_whose_clock_is_off_and_an_agent_that_froze(
        listening: Mesh, other_host: netns.Host, tmp_path: Path) -> None:
    """A host 40 s ahead (no NTP): its workload joins and serves, and `tulle check` and
    `tulle diagnose` name the host and its offset. Then its agent freezes: check names it as
    not answering."""
    if shutil.which("faketime") is None:
        pytest.fail("faketime is missing: scripts/test.sh installs it (Debian's faketime)")
    mesh = listening
    mesh.run("books", name="books-1")
    joiner = Joiner(mesh, other_host, tmp_path / "b")
    try:
        made = joiner.token("web")
        process, _ = joiner.run("web-1", "web", made["token"], made["caFingerprint"],
                                made["controlPlane"], free_port(), clock="+40s")
        wait_for("web-1 ready", lambda: any(
            w["name"] == "web-1" and w["state"] == "ready" for w in mesh.api.get("/v1/workloads")),
            timeout=40)
        result = mesh.cli("check", "-o", "json", check=False)
        checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
        clock = checks["hosts-clock"]
        assert clock["status"] == "failed", json.dumps(clock, indent=1)
        assert f"host {other_host.peer}'s clock is +4" in clock["message"]
        assert "web-1.default" in clock["message"] and "this host" not in clock["message"]
        assert checks["hosts-reachable"]["status"] == "ok", checks["hosts-reachable"]
        assert result.returncode != 0
        # diagnose names the host too (it asks every agent to report, and for its clock).
        diagnosis = json.loads(mesh.cli("diagnose", "-o", "json", check=False).stdout)
        [off] = [f for f in diagnosis["findings"] if f["code"] == "TUL1092"]
        assert off["subject"] == f"host/{other_host.peer}" and off["severity"] == "error", off
        assert any("web-1.default" in line for line in off["evidence"])

        agent = psutil.Process(process.pid)
        # The agent (and the `tulle run` above it), not its Envoy or application.
        frozen = [p for p in [agent, *agent.children(recursive=True)]
                  if "tulle" in " ".join(p.cmdline())]
        assert frozen, [p.cmdline() for p in [agent, *agent.children(recursive=True)]]
        for p in frozen:
            p.suspend()
        try:
            result = mesh.cli("check", "-o", "json", check=False)
            checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
            reach = checks["hosts-reachable"]
            assert reach["status"] == "failed", json.dumps(reach, indent=1)
            assert f"host {other_host.peer}: the agent of web-1.default does not answer" in \
                reach["message"]
            assert "books-1" not in reach["message"]
        finally:
            for p in frozen:
                p.resume()
    finally:
        joiner.close()


TEAPOT = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-teapot}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection: {abort: {httpStatus: 418, percent: 100}}
"""


def test_a_host_cut_off_keeps_its_config_and_resyncs_when_it_comes_back(
        listening: Mesh, other_host: netns.Host, tmp_path: Path) -> None:
    """The link to web-1's host goes down for longer than the agent's silence limit. `tulle
    check` names the host as cut off; web-1's sidecar keeps its last config (its Envoy is not
    restarted); when the link comes back, web-1 registers again by itself, its proxy resyncs
    and takes a change made meanwhile, and its calls work again: no restart, no new token."""
    mesh = listening
    mesh.run("books", name="books-1")
    joiner = Joiner(mesh, other_host, tmp_path / "b")
    try:
        process, log, port = joiner.web_calling_books()
        envoys = [p.pid for p in _descendants(process.pid) if "envoy" in p.name()]
        assert envoys, "web-1's Envoy runs on the other host"

        other_host.cut()
        try:
            cut_at = time.time()
            wait_for("check to name the host that is cut off", lambda: _cut_off(
                mesh, other_host.peer), timeout=30)
            mesh.cli("apply", "-f", "-", stdin=TEAPOT)  # a change it cannot get now
            found = json.loads(mesh.cli("diagnose", "-o", "json", check=False).stdout)
            [cut] = [f for f in found["findings"] if f["code"] == "TUL1093"]
            assert cut["subject"] == f"host/{other_host.peer}", cut
            assert "web-1.default" in " ".join(cut["evidence"]) and "(since " in cut["cause"]
            assert not [f for f in found["findings"] if f["code"] in ("TUL1015", "TUL1038")
                        and "web-1" in f["subject"]], "its process is on its host, not here"
            time.sleep(max(0.0, cut_at + 20 - time.time()))  # past the agent's 15 s limit
        finally:
            other_host.restore()

        wait_for("web-1's proxy to take the change made while it was cut off",
                 lambda: _calls(joiner, port) == 418, timeout=60)
        agent_log = joiner.root / "state" / "workloads" / "web-1.default" / "agent.log"
        wait_for("web-1's agent to have its session back", lambda: "session restored" in
                 agent_log.read_text(), timeout=60)
        time.sleep(3)  # what the control plane makes of the old session's end, if anything
        [web] = [w for w in mesh.api.get("/v1/workloads") if w["name"] == "web-1"]
        assert web["state"] == "ready", web
        mesh.cli("delete", "trafficpolicy", "books-teapot")
        wait_for("and the next one", lambda: _calls(joiner, port) == 200, timeout=30)
        assert [p.pid for p in _descendants(process.pid) if "envoy" in p.name()] == envoys, \
            "the sidecar's Envoy was not restarted"
        assert process.poll() is None, log.read_text()
        result = mesh.cli("check", "-o", "json", check=False)
        checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
        assert checks["hosts-reachable"]["status"] == "ok", checks["hosts-reachable"]
    finally:
        joiner.close()


def _calls(joiner: Joiner, port: int) -> int | None:
    try:
        return int(joiner.call(port, "http://books/")["status"])
    except (subprocess.SubprocessError, ValueError, KeyError):
        return None


def _cut_off(mesh: Mesh, peer: str) -> bool:
    result = mesh.cli("check", "-o", "json", check=False)
    reach = {c["id"]: c for c in json.loads(result.stdout)["checks"]}["hosts-reachable"]
    return reach["status"] == "failed" and f"host {peer}" in reach["message"] and \
        "silent for" in reach["message"] and "(since " in reach["message"]


def test_an_agent_on_another_host_fails_over_to_another_replica(
        other_host: netns.Host, tmp_path: Path) -> None:
    """Two replicas on one etcd, both listening on the link to the other host. web-1 joins
    replica A from there, and A is killed (-9). web-1's agent registers with B at B's
    identity port, by the certificate A issued (it holds no token any more), its sidecar's
    ADS stream follows to B, and a change applied on B reaches it. B took that certificate
    because A issued it to web-1; a sibling's would not do (the unit tests show that)."""
    key = tmp_path / "ca-encryption.key"
    key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    with etcd_server() as etcd:
        a, b = Mesh(tmp_path / "a"), Mesh(tmp_path / "b")
        joiner = Joiner(a, other_host, tmp_path / "host")
        try:
            for mesh in (b, a):  # B first: A's greeting then lists B, to fail over to
                mesh.up("--store", "etcd://" + etcd.removeprefix("http://"),
                        "--ca-encryption-key", str(key), "--listen", other_host.local)
            b.run("books", name="books-1")
            process, log, port = joiner.web_calling_books()

            os.kill(a.status()["pid"], signal.SIGKILL)
            killed = time.monotonic()
            agent_log = joiner.root / "state" / "workloads" / "web-1.default" / "agent.log"
            wait_for("web-1's agent to register with B", lambda: (
                f"moved to the replica at {other_host.local}:{b.identity_port}"
                in agent_log.read_text()), timeout=30)
            print(f"measured: web-1's agent moved {time.monotonic() - killed:.1f}s after "
                  "the kill")
            assert _calls(joiner, port) == 200, "its sidecar kept serving meanwhile"
            b.cli("apply", "-f", "-", stdin=TEAPOT)
            wait_for("B's change to reach web-1, whose ADS stream moved to B",
                     lambda: _calls(joiner, port) == 418, timeout=30)
            print(f"measured: B's change reached web-1 {time.monotonic() - killed:.1f}s "
                  "after the kill")
            assert process.poll() is None, log.read_text()
            assert "refuses this workload" not in agent_log.read_text()
            status = {p["node"]: p for p in b.api.get("/v1/proxies")}
            assert "web-1.default" in status, status
        finally:
            joiner.close()
            a.close()
            b.close()


def test_a_root_rotation_carries_a_sidecar_on_another_host(
        listening: Mesh, other_host: netns.Host, tmp_path: Path) -> None:
    """Rotate the root while web-1 runs on another host, then restart the control plane, so
    that every channel to it is a new handshake with its new certificate. web-1's agent
    (its session and renewals) and its sidecar's xDS channel trust the new roots: the agent
    took each new bundle over its session and rewrote the roots its Envoy reads; nothing in
    the bootstrap pins the old ones. web-1 gets its stream back and takes a change."""
    mesh = listening
    mesh.run("books", name="books-1")
    joiner = Joiner(mesh, other_host, tmp_path / "b")
    try:
        process, log, port = joiner.web_calling_books()
        rotated = json.loads(mesh.cli("certs", "rotate", "root", "-o", "json",
                                      timeout=300).stdout)
        assert [s["stage"] for s in rotated["stages"]] == [1, 2, 3]
        assert _calls(joiner, port) == 200
        roots = joiner.root / "state" / "workloads" / "web-1.default" / "xds-client" / \
            "roots.json"
        bundle = json.loads(roots.read_text())["resources"][0]["validation_context"][
            "trusted_ca"]["inline_string"]
        assert bundle.count("BEGIN CERTIFICATE") == 1, "the new root alone"

        mesh.cli("down")
        mesh.up("--listen", other_host.local)
        mesh.cli("apply", "-f", "-", stdin=TEAPOT)
        wait_for("web-1's sidecar to take a change from the restarted control plane",
                 lambda: _calls(joiner, port) == 418, timeout=60)
        [web] = [w for w in mesh.api.get("/v1/workloads") if w["name"] == "web-1"]
        assert web["state"] == "ready", web
        assert process.poll() is None, log.read_text()
    finally:
        joiner.close()


def test_only_a_replica_is_answered_on_the_replicas_routes(
        listening: Mesh, other_host: netns.Host) -> None:
    """What replicas ask of each other is on the identity port, reachable from other hosts:
    no client certificate, or a workload's (valid, of the same mesh), gets 403; the control
    plane's own certificate gets the answer."""
    mesh = listening
    mesh.run("books", name="books-1")
    [secret] = json.loads((mesh.paths.workload_dir("default", "books-1") / xdsclient.FILE)
                          .read_text())["resources"]
    held = secret["tls_certificate"]

    def context(chain: str | None = None, key: str | None = None) -> ssl.SSLContext:
        made = ssl.create_default_context()
        made.check_hostname = False
        made.verify_mode = ssl.CERT_NONE
        if chain and key:
            made.load_cert_chain(chain, key)
        return made

    url = f"https://{other_host.local}:{mesh.identity_port}"
    calls = (("GET", "/v1/replicas/status"), ("GET", "/v1/replicas/telemetry/raw"),
             ("POST", "/v1/replicas/ca-sync"))
    for who in (context(), context(held["certificate_chain"]["filename"],
                                   held["private_key"]["filename"])):
        for method, path in calls:
            request = urllib.request.Request(url + path, method=method,
                                             data=b"{}" if method == "POST" else None)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5, context=who)
            assert refused.value.code == 403, (method, path)
    replica = context(str(mesh.paths.ca_dir / "controlplane.crt"),
                      str(mesh.paths.ca_dir / "controlplane.key"))
    with urllib.request.urlopen(url + "/v1/replicas/status", timeout=5,
                                context=replica) as answer:
        assert json.loads(answer.read())["pid"] == mesh.status()["pid"]


def test_an_agent_of_a_listening_replica_serves_its_admin_to_the_control_plane_only(
        listening: Mesh, other_host: netns.Host) -> None:
    """A workload of this host, with a control plane that listens for other hosts, serves its
    agent's port on the host's address too (a replica on another host reads its Envoy there
    once its session moved): over TLS, to the control plane's certificate only. No client
    certificate, or a workload's of the same mesh, is refused before the agent token is even
    asked for; the control plane's gets that far (401 without the token)."""
    mesh = listening
    mesh.run("books", name="books-1")
    agent_port = int(mesh.workload("books-1")["agentPort"])
    held = json.loads((mesh.paths.workload_dir("default", "books-1") / xdsclient.FILE)
                      .read_text())["resources"][0]["tls_certificate"]

    def answer(chain: str | None = None, key: str | None = None) -> int | str:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if chain and key:
            context.load_cert_chain(chain, key)
        try:
            urllib.request.urlopen(f"https://{other_host.local}:{agent_port}/clock",
                                   timeout=5, context=context)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, ssl.SSLError) as exc:
            return type(exc).__name__
        return 200

    assert answer() not in (200, 401)
    assert answer(held["certificate_chain"]["filename"],
                  held["private_key"]["filename"]) not in (200, 401)
    assert answer(str(mesh.paths.ca_dir / "controlplane.crt"),
                  str(mesh.paths.ca_dir / "controlplane.key")) == 401
