"""A neighbour (``nobody``) against every HTTP port of a mesh: the agent's, the API and the
identity port. What it sends costs the mesh bounded memory and time, and bad input gets a 4xx,
never a 500 nor a traceback in a log.

Found before (issue 14): four connections declaring 60 MB bodies took an agent from 25 MB to
262 MB RSS, and held it (the agent read bodies before checking the token, with no cap and no
deadline); two hundred connections sending a megabyte of headers each, never finishing, took
the control plane from 80 MB to 560 MB for an hour (aiohttp bounds each header, not a head, and
gives a first head an hour); a slow body held the agent forever; deep JSON, a token that is not
UTF-8 and a non-UTF-8-safe join token got 500s and tracebacks.

Memory is measured (psutil, the peak RSS while the probe runs) against generous bounds, never
time against a rate; "cut off" means the server ends the connection well within the probe's
patience.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import pytest

from tests.security.support import as_nobody, probe_python
from tests.support.mesh import Mesh

MB = 1 << 20
GROWTH_BOUND = 50 * MB  # generous: the bounded servers keep well under a few MB

CONNECT = """
import json, select, socket, ssl, sys, threading, time
def connect(port, tls):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    if tls:  # the neighbour has no trust bundle: it does not check the server
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        s = context.wrap_socket(s)
    return s
"""

# argv: port, tls, path, connections, bytes. Declares a body of that size on each connection
# and streams it as fast as the server takes it; prints the bytes each connection got out.
HUGE_BODIES = CONNECT + """
port, tls, path, count, size = int(sys.argv[1]), sys.argv[2] == "tls", sys.argv[3], \\
    int(sys.argv[4]), int(sys.argv[5])
sent = [0] * count
def push(i):
    try:
        s = connect(port, tls)
        s.sendall(b"POST %s HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n"
                  b"Content-Length: %d\\r\\n\\r\\n" % (path.encode(), size))
        chunk = b" " * 65536
        while sent[i] < size:
            s.sendall(chunk)
            sent[i] += len(chunk)
    except OSError:
        pass
threads = [threading.Thread(target=push, args=(i,)) for i in range(count)]
for t in threads: t.start()
for t in threads: t.join(60)
print(json.dumps(sent))
"""

# argv: port, tls, connections, KiB. Each connection sends that much of a head that never
# ends (8 KB headers), all connections held open together for a moment.
HEADER_FLOOD = CONNECT + """
port, tls, count, kib = int(sys.argv[1]), sys.argv[2] == "tls", int(sys.argv[3]), \\
    int(sys.argv[4])
line = b"X-Pad: " + b"a" * 8000 + b"\\r\\n"
held, cut = [], 0
def flood():
    global cut
    try:
        s = connect(port, tls)
        held.append(s)
        s.sendall(b"GET /v1/status HTTP/1.1\\r\\nHost: x\\r\\n")
        for _ in range(kib // 8):
            s.sendall(line)
    except OSError:
        cut += 1
threads = [threading.Thread(target=flood) for _ in range(count)]
for t in threads: t.start()
for t in threads: t.join(60)
time.sleep(1)
print(json.dumps({"cut": cut, "connections": count}))
"""

# argv: port, connections. Opens them, sends nothing, holds them together for a moment.
SILENT = CONNECT + """
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError:
        break
time.sleep(2)
print(json.dumps(len(held)))
"""

# argv: JSON [[name, port, tls, prefix]]. Each connection sends its prefix, then one byte every
# half second; prints, per name, how long until the server answered or closed (None: never).
DRIBBLE = CONNECT + """
PATIENCE = 30.0
results = {}
def dribble(name, port, tls, prefix):
    start = time.monotonic()
    try:
        s = connect(port, tls)
        s.sendall(prefix.encode())
        while time.monotonic() - start < PATIENCE:
            s.sendall(b"a")
            readable = (tls and s.pending()) or select.select([s], [], [], 0.5)[0]
            if readable:
                answer = s.recv(65536)
                results[name] = [round(time.monotonic() - start, 1), answer[:12].decode()]
                return
        results[name] = [None, "still open"]
    except OSError as e:
        results[name] = [round(time.monotonic() - start, 1), type(e).__name__]
threads = [threading.Thread(target=dribble, args=tuple(t)) for t in json.loads(sys.argv[1])]
for t in threads: t.start()
for t in threads: t.join(60)
print(json.dumps(results))
"""

# stdin: JSON [[name, port, tls, base64 request]]. Prints each answer's status (0: none).
EXCHANGES = CONNECT + """
import base64
results = {}
def exchange(name, port, tls, raw):
    answer = b""
    try:
        s = connect(port, tls)
        s.sendall(base64.b64decode(raw))
        while chunk := s.recv(65536):
            answer += chunk
    except OSError:
        pass
    parts = answer.split(b" ", 2)
    results[name] = [int(parts[1]) if len(parts) > 2 else 0,
                     answer.split(b"\\r\\n\\r\\n", 1)[-1][:200].decode(errors="replace")]
threads = [threading.Thread(target=exchange, args=tuple(t)) for t in json.load(sys.stdin)]
for t in threads: t.start()
for t in threads: t.join(30)
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Ports:
    """Every HTTP port of a mesh with one workload, and the processes behind them."""

    api: int
    identity: int
    agent: int
    controlplane_pid: int
    agent_pid: int


@pytest.fixture
def ports(exposed_mesh: Mesh) -> Ports:
    exposed_mesh.run("books", name="books-1")
    workload = exposed_mesh.workload("books-1")
    return Ports(api=exposed_mesh.api_port, identity=exposed_mesh.identity_port,
                 agent=int(workload["agentPort"]),
                 controlplane_pid=int(exposed_mesh.status()["pid"]),
                 agent_pid=exposed_mesh.workloads[0].process.pid)


@contextmanager
def rss_growth(*pids: int) -> Iterator[dict[int, int]]:
    """The peak RSS growth of each process while the block runs (sampled every 20 ms)."""
    processes = {pid: psutil.Process(pid) for pid in pids}
    base = {pid: p.memory_info().rss for pid, p in processes.items()}
    growth = dict.fromkeys(pids, 0)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            for pid, process in processes.items():
                growth[pid] = max(growth[pid], process.memory_info().rss - base[pid])

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield growth
    finally:
        done.set()
        sampler.join()


def run_probe(code: str, *args: str, stdin: str | None = None, timeout: float = 90.0) -> object:
    result = as_nobody([probe_python(), "-c", code, *args], stdin=stdin, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_huge_declared_bodies_cost_the_mesh_nothing(ports: Ports) -> None:
    targets = [(ports.agent, "plain", "/logging"), (ports.api, "plain", "/v1/resources/apply"),
               (ports.identity, "tls", "/v1/identity/certificates")]
    with rss_growth(ports.agent_pid, ports.controlplane_pid) as growth:
        for port, tls, path in targets:
            run_probe(HUGE_BODIES, str(port), tls, path, "4", str(60 * MB))
    print(f"peak RSS growth: agent {growth[ports.agent_pid] / MB:.1f} MB, control plane "
          f"{growth[ports.controlplane_pid] / MB:.1f} MB")
    assert growth[ports.agent_pid] < GROWTH_BOUND, f"agent grew {growth[ports.agent_pid] / MB} MB"
    assert growth[ports.controlplane_pid] < GROWTH_BOUND, \
        f"control plane grew {growth[ports.controlplane_pid] / MB} MB"


def test_floods_of_connections_and_headers_are_cut_off(ports: Ports) -> None:
    targets = [(ports.api, "plain"), (ports.identity, "tls"), (ports.agent, "plain")]
    with rss_growth(ports.agent_pid, ports.controlplane_pid) as growth:
        for port, tls in targets:
            run_probe(HEADER_FLOOD, str(port), tls, "100", "1024")
            # Not even a TLS handshake: each still costs the server its buffers.
            run_probe(SILENT, str(port), "400")
    print(f"peak RSS growth: agent {growth[ports.agent_pid] / MB:.1f} MB, control plane "
          f"{growth[ports.controlplane_pid] / MB:.1f} MB")
    assert growth[ports.controlplane_pid] < GROWTH_BOUND, \
        f"control plane grew {growth[ports.controlplane_pid] / MB} MB"
    assert growth[ports.agent_pid] < GROWTH_BOUND, f"agent grew {growth[ports.agent_pid] / MB} MB"


def test_slow_heads_and_slow_bodies_are_cut_off(ports: Ports) -> None:
    head = "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: "
    body = ("POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n")
    targets = [
        ("agent head", ports.agent, False, head),
        ("agent body", ports.agent, False, body.format("/logging")),
        ("api head", ports.api, False, head),
        ("api body", ports.api, False, body.format("/v1/resources/apply")),
        ("identity head", ports.identity, True, head),
        ("identity body", ports.identity, True, body.format("/v1/identity/certificates")),
    ]
    results = run_probe(DRIBBLE, json.dumps(targets))
    assert isinstance(results, dict)
    print(f"cut off after (s, answer): {results}")
    slow = {name: result for name, result in results.items()
            if result[0] is None or result[0] > 25}
    assert slow == {}, results


def test_bad_input_gets_a_4xx_and_no_traceback(exposed_mesh: Mesh, ports: Ports) -> None:
    api_token = exposed_mesh.paths.token_file.read_text().strip().encode()
    agent_token = _agent_token(exposed_mesh, "books-1.default").encode()
    deep = b"[" * 100_000 + b"]" * 100_000

    def post(path: str, body: bytes, token: bytes, *, content_type: bytes = b"application/json",
             extra: bytes = b"") -> bytes:
        return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + token + b"\r\nContent-Type: " + content_type
                + b"\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def get(path: str, token: bytes) -> bytes:
        return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + token + b"\r\n\r\n")

    csr = json.dumps({"node": "books-1.default", "csr": "x", "keyPath": "/k"}).encode()
    # (name, port, TLS, request, expected status)
    cases = [
        ("api: token not UTF-8", ports.api, False, get("/v1/status", b"\xff\xfe\x80"), 401),
        ("api: malformed JSON", ports.api, False,
         post("/v1/resources/apply", b"{nope", api_token), 400),
        ("api: deep JSON", ports.api, False, post("/v1/resources/apply", deep, api_token), 400),
        ("api: deep telemetry", ports.api, False,
         post("/v1/agent/workloads/books-1.default/telemetry", deep, api_token), 400),
        ("api: deep log levels", ports.api, False,
         post("/v1/proxies/books-1.default/logging", deep, api_token), 400),
        ("api: a form", ports.api, False, post("/v1/resources/apply", b"a=b", api_token,
                                               content_type=b"application/x-www-form-urlencoded"),
         415),
        ("api: gzip", ports.api, False, post("/v1/resources/apply", b"\x1f\x8b", api_token,
                                             extra=b"Content-Encoding: gzip\r\n"), 415),
        ("api: not HTTP", ports.api, False, b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
        ("identity: token not UTF-8", ports.identity, True,
         post("/v1/identity/certificates", csr, b"\xff\xfe\x80"), 403),
        # Who asks is judged before what is asked: a stranger's unreadable body is a 403.
        ("identity: malformed JSON", ports.identity, True,
         post("/v1/identity/certificates", b"{nope", b"x"), 403),
        ("identity: deep JSON", ports.identity, True,
         post("/v1/identity/certificates", b"[" * 30_000 + b"]" * 30_000, b"x"), 403),
        ("identity: a form", ports.identity, True, post(
            "/v1/identity/certificates", b"a=b", b"x", content_type=b"multipart/form-data"), 415),
        ("agent: token not UTF-8", ports.agent, False, get("/admin/stats", b"\xff\xfe\x80"), 401),
        ("agent: malformed JSON", ports.agent, False, post("/logging", b"{nope", agent_token),
         400),
        ("agent: deep JSON", ports.agent, False,
         post("/logging", b"[" * 8000 + b"]" * 8000, agent_token), 400),
        ("agent: a form", ports.agent, False, post("/logging", b"a=b", agent_token,
                                                   content_type=b"text/plain"), 415),
        ("agent: not HTTP", ports.agent, False, bytes(range(256)) + b"\r\n\r\n", 400),
    ]
    results = run_probe(EXCHANGES, stdin=json.dumps(
        [[name, port, tls, base64.b64encode(raw).decode()] for name, port, tls, raw, _ in cases]))
    assert isinstance(results, dict)
    assert {name: results[name][0] for name, *_ in cases} == \
        {name: status for name, _, _, _, status in cases}, results
    time.sleep(0.5)  # the control plane's log is written by another process: let it flush
    logs = {"controlplane.log": exposed_mesh.paths.log_file,
            "agent.log": exposed_mesh.paths.workload_dir("default", "books-1") / "agent.log"}
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        assert "Traceback" not in text and "Unhandled exception" not in text, (name, text)


def _agent_token(mesh: Mesh, node_id: str) -> str:
    """What the control plane presents to an agent: a secret of the store (we are root)."""
    with sqlite3.connect(f"file:{mesh.paths.database}?mode=ro", uri=True) as db:
        (record,) = db.execute("SELECT record FROM workloads WHERE node_id = ?",
                               (node_id,)).fetchone()
    return str(json.loads(record)["credentials"]["agent_token"])
