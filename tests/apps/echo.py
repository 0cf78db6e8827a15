"""A test application: answers who it is, and can call another service through its sidecar.

GET /anything          -> JSON {"workload", "service", "path", "headers"}
GET /call?url=URL      -> fetches URL through HTTP_PROXY (the sidecar); returns its status and
                          body as JSON, so a test sees which workload answered
GET /status/CODE       -> answers with that status code
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

WORKLOAD = os.environ.get("TULLE_WORKLOAD", "unknown")
SERVICE = os.environ.get("TULLE_SERVICE", "unknown")
OPENER = urllib.request.build_opener()  # honours HTTP_PROXY from the environment


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, sent at once: a header write then a body write would wait for
    # a delayed ACK (about 40 ms) under Nagle's algorithm.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/call":
            self._call(parse_qs(url.query)["url"][0])
        elif url.path.startswith("/status/"):
            self._send(int(url.path.rsplit("/", 1)[1]), {"workload": WORKLOAD})
        else:
            self._send(200, {"workload": WORKLOAD, "service": SERVICE, "path": self.path,
                             "headers": dict(self.headers)})

    def _call(self, target: str) -> None:
        try:
            with OPENER.open(target, timeout=10) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        except OSError as exc:
            self._send(599, {"error": str(exc)})
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        self._send(200, {"status": status, "body": parsed})

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
