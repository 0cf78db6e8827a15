"""Through the sidecar's HTTP proxy, `CONNECT TARGET`, then send one line and print what
comes back: the proxy's status line, then the tunnel's answer.

    python3 connect_line.py TARGET LINE
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse


def main(target: str, line: str) -> None:
    proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
    with socket.create_connection((proxy.hostname, proxy.port or 80), timeout=10) as conn:
        conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        status, _, rest = head.partition(b"\r\n")
        print(status.decode())
        if b" 200 " not in status + b" ":
            print(rest.partition(b"\r\n\r\n")[2].decode(errors="replace"))
            return
        conn.sendall(line.encode() + b"\n")
        print(conn.makefile("rb").readline().decode().strip())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
