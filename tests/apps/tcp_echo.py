"""A TCP echo server: sends back every line it receives, prefixed with its workload name."""

from __future__ import annotations

import contextlib
import os
import socketserver
import sys

NAME = os.environ.get("TULLE_WORKLOAD", "unknown").encode()


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(NAME + b":" + line)


if __name__ == "__main__":
    server = socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo)
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
