"""The demo bookstore: plain HTTP services that know nothing about the mesh.

They reach each other by service name (http://books/...) through the HTTP_PROXY variable that
`tulle run` sets. Standard library only.

    python -m tulle.demo.apps books PORT     # JSON list of books
    python -m tulle.demo.apps authors PORT   # JSON author records
    python -m tulle.demo.apps web PORT       # the front end: calls books and authors
    python -m tulle.demo.apps traffic        # a steady stream of requests to web
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INSTANCE = os.environ.get("TULLE_WORKLOAD", "local")

BOOKS = [
    {"id": 1, "title": "The Left Hand of Darkness", "author": 1},
    {"id": 2, "title": "A Wizard of Earthsea", "author": 1},
    {"id": 3, "title": "Kindred", "author": 2},
    {"id": 4, "title": "Parable of the Sower", "author": 2},
    {"id": 5, "title": "The Dispossessed", "author": 1},
]
AUTHORS = {1: "Ursula K. Le Guin", 2: "Octavia E. Butler"}


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    role = ""
    # One write per response, sent at once (no 40 ms delayed-ACK stalls under Nagle).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        try:
            status, content_type, body = ROUTES[self.role](self.path)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            status, content_type = 502, "application/json"
            body = json.dumps({"error": str(exc), "instance": INSTANCE}).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Flaky:
    """books v2 is the canary with a bug: every FAIL_EVERY-th request fails with 503. The
    demo's HTTPRoute retries 503s, so callers rarely see it, but `tulle stat`, `routes` and
    `tap` do."""

    FAIL_EVERY = 5

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def fails(self) -> bool:
        if os.environ.get("TULLE_DEMO_FLAKY") != "1":
            return False
        with self.lock:
            self.count += 1
            return self.count % self.FAIL_EVERY == 0


FLAKY = _Flaky()


def books(path: str) -> tuple[int, str, bytes]:
    if FLAKY.fails():
        return 503, "application/json", json.dumps({"error": "canary bug",
                                                    "instance": INSTANCE}).encode()
    return 200, "application/json", json.dumps({"instance": INSTANCE, "books": BOOKS}).encode()


def authors(path: str) -> tuple[int, str, bytes]:
    wanted = path.rstrip("/").rsplit("/", 1)[-1]
    if wanted.isdigit() and int(wanted) in AUTHORS:
        record = {"id": int(wanted), "name": AUTHORS[int(wanted)], "instance": INSTANCE}
        return 200, "application/json", json.dumps(record).encode()
    return 404, "application/json", b'{"error": "no such author"}'


def web(path: str) -> tuple[int, str, bytes]:
    listing = fetch("http://books/books")
    names = {a: fetch(f"http://authors/authors/{a}") for a in {b["author"] for b in
                                                              listing["books"]}}
    rows = [{"title": b["title"], "author": names[b["author"]]["name"]}
            for b in listing["books"]]
    served_by = {"web": INSTANCE, "books": listing["instance"],
                 "authors": sorted({n["instance"] for n in names.values()})}
    if path.startswith("/api"):
        return 200, "application/json", json.dumps({"books": rows,
                                                    "servedBy": served_by}).encode()
    items = "".join(f"<li><b>{html.escape(r['title'])}</b> by {html.escape(r['author'])}</li>"
                    for r in rows)
    page = (f"<html><head><title>tulle bookstore</title></head><body><h1>Bookstore</h1>"
            f"<ul>{items}</ul><p>served by {html.escape(json.dumps(served_by))}</p>"
            f"</body></html>")
    return 200, "text/html; charset=utf-8", page.encode()


ROUTES = {"books": books, "authors": authors, "web": web}


def serve(role: str, port: int) -> None:
    handler = type(f"{role.title()}Handler", (Handler,), {"role": role})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


# Ten requests a second: enough for the canary's bug to show in `tulle diagnose` within
# seconds (its findings want a dozen answers of books-2 in the window), little for the host.
TRAFFIC_INTERVAL_S = 0.1


def traffic(interval_s: float = TRAFFIC_INTERVAL_S) -> None:
    sent = failed = 0
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            sent += 1
            try:
                fetch("http://web/api")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failed += 1
                print(f"request {sent} failed: {exc}", flush=True)
            if sent % 100 == 0:
                print(f"{sent} requests sent, {failed} failed", flush=True)
            if sent % 35 == 0:
                # A lookup of an author who does not exist: a 404 to see in `tulle tap`.
                with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                    fetch("http://authors/authors/9")
            time.sleep(interval_s)


def main(argv: list[str]) -> int:
    if argv[:1] == ["traffic"]:
        traffic()
        return 0
    if len(argv) != 2 or argv[0] not in ROUTES or not argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    serve(argv[0], int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
