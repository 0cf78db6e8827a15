"""A backend that misbehaves as real ones do, from its start or on demand.

    backend.py PORT [--fail-pct N] [--fail-code C] [--delay-ms MS] [--hang] [--prefix P]
    backend.py --never-listen          # the application runs but never opens its port

GET ANY PATH        -> 200 JSON {"workload", "service", "path"}
GET /status/CODE    -> answers CODE (a client error the application means)
--prefix P          -> paths outside P answer 404, as an application with fixed routes does
--fail-pct N        -> N % of requests answer --fail-code (503 by default), spread evenly
--delay-ms MS       -> every request waits MS first
--hang              -> requests are read and never answered (the connection stays open)
GET /control?...    -> changes the behaviour of later requests (on the application's own port,
                       outside the mesh): fail_pct, fail_code, delay, hang=1, reset=1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

WORKLOAD = os.environ.get("TULLE_WORKLOAD", "unknown")
SERVICE = os.environ.get("TULLE_SERVICE", "unknown")


class Behaviour:
    def __init__(self, args: argparse.Namespace) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.fail_pct, self.fail_code = args.fail_pct, args.fail_code
        self.delay_ms, self.hang, self.prefix = args.delay_ms, args.hang, args.prefix

    def next(self) -> tuple[int, int, bool]:
        """(status to fail with or 0, delay in ms, hang) for the next request."""
        with self.lock:
            self.requests += 1
            n, pct = self.requests, self.fail_pct
            failing = pct > 0 and (n * pct) // 100 > ((n - 1) * pct) // 100
            return (self.fail_code if failing else 0), self.delay_ms, self.hang

    def control(self, query: dict[str, str]) -> None:
        with self.lock:
            if "reset" in query:
                self.fail_pct, self.delay_ms, self.hang = 0, 0, False
            self.fail_pct = int(query.get("fail_pct", self.fail_pct))
            self.fail_code = int(query.get("fail_code", self.fail_code))
            self.delay_ms = int(query.get("delay", self.delay_ms))
            self.hang = query.get("hang", "1" if self.hang else "0") == "1"


class Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/control":
            self.behaviour.control({k: v[0] for k, v in parse_qs(url.query).items()})
            self._send(200, {"workload": WORKLOAD, "control": url.query})
            return
        fail, delay, hang = self.behaviour.next()
        if hang:
            while True:  # an application stuck for good: accepts, reads, never answers
                time.sleep(3600)
        if delay:
            time.sleep(delay / 1000)
        if url.path.startswith("/status/"):
            status = int(url.path.rsplit("/", 1)[1])
        elif self.behaviour.prefix and not url.path.startswith(self.behaviour.prefix):
            status = 404
        else:
            status = fail or 200
        self._send(status, {"workload": WORKLOAD, "service": SERVICE, "path": self.path})

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
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int, nargs="?")
    parser.add_argument("--fail-pct", type=int, default=0)
    parser.add_argument("--fail-code", type=int, default=503)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--never-listen", action="store_true")
    args = parser.parse_args()
    if args.never_listen:
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()  # alive, busy with something else, never listening
        return
    Handler.behaviour = Behaviour(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
