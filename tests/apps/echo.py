"""A test application: answers who it is, calls other services, and misbehaves on demand.

Any path              -> 200 JSON {"workload", "service", "path", "method", "headers"}
   ?status=CODE       -> answers with that status instead
   ?delay=MS          -> waits first
GET /call?url=URL     -> fetches URL through HTTP_PROXY (the sidecar); returns its status and
                         body as JSON, so a test sees which workload answered
GET /status/CODE      -> answers with that status code
GET /control?...      -> changes how this instance treats every later request (tests call it
                         on the application's own port, not through the mesh):
   fail=CODE&every=N  -> every Nth request answers CODE (N=1: all of them)
   delay=MS           -> every request waits MS first
   reset=1            -> back to normal, counter to zero
GET /counter          -> {"requests": how many requests were served, control calls excluded}
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

WORKLOAD = os.environ.get("TULLE_WORKLOAD", "unknown")
SERVICE = os.environ.get("TULLE_SERVICE", "unknown")
OPENER = urllib.request.build_opener()  # honours HTTP_PROXY from the environment


class Behaviour:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.fail_code = 0
        self.every = 1
        self.delay_ms = 0

    def next(self) -> tuple[int, int]:
        """(status to answer or 0, delay in ms) for the next request."""
        with self.lock:
            self.requests += 1
            failing = self.fail_code and self.requests % self.every == 0
            return (self.fail_code if failing else 0), self.delay_ms


BEHAVIOUR = Behaviour()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, sent at once: a header write then a body write would wait for
    # a delayed ACK (about 40 ms) under Nagle's algorithm.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._handle()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/control":
            self._control(query)
            return
        if url.path == "/counter":
            self._send(200, {"requests": BEHAVIOUR.requests})
            return
        fail, delay = BEHAVIOUR.next()
        delay = int(query.get("delay", delay))
        if delay:
            time.sleep(delay / 1000)
        if url.path == "/call":
            self._call(query["url"])
        elif url.path.startswith("/status/"):
            self._send(int(url.path.rsplit("/", 1)[1]), {"workload": WORKLOAD})
        else:
            status = fail or int(query.get("status", 200))
            self._send(status, {"workload": WORKLOAD, "service": SERVICE, "path": self.path,
                                "method": self.command, "headers": dict(self.headers)})

    def _control(self, query: dict[str, str]) -> None:
        with BEHAVIOUR.lock:
            if "reset" in query:
                BEHAVIOUR.requests, BEHAVIOUR.fail_code, BEHAVIOUR.delay_ms = 0, 0, 0
            if "fail" in query:
                BEHAVIOUR.fail_code = int(query["fail"])
                BEHAVIOUR.every = int(query.get("every", 1))
            if "delay" in query:
                BEHAVIOUR.delay_ms = int(query["delay"])
        self._send(200, {"workload": WORKLOAD, "control": query})

    def _call(self, target: str) -> None:
        try:
            with OPENER.open(target, timeout=10) as response:
                status, body = response.status, response.read().decode()
                headers = dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, body, headers = exc.code, exc.read().decode(), dict(exc.headers)
        except OSError as exc:
            self._send(599, {"error": str(exc)})
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        self._send(200, {"status": status, "body": parsed, "headers": headers})

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
