"""A long-running client: calls URLs through its sidecar (HTTP_PROXY) at a steady rate until
stopped, like a real service's traffic, so that every fault meets live requests.

    caller.py [--rps 20] [--timeout 30] URL [URL ...]

URLs are called in turn. Requests run concurrently (a slow or hanging backend does not slow
the rate down) up to 64 in flight; past that a tick is skipped and counted. Every 2 s one line
on stdout counts the answers by status (``ERR`` for a failed connection), for the test's log.
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MAX_IN_FLIGHT = 64
OPENER = urllib.request.build_opener()  # honours HTTP_PROXY from the environment


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_status: collections.Counter[str] = collections.Counter()
        self.in_flight = 0

    def add(self, status: str) -> None:
        with self.lock:
            self.by_status[status] += 1
            self.in_flight -= 1


def call(url: str, timeout: float, counts: Counts) -> None:
    try:
        with OPENER.open(url, timeout=timeout) as response:
            response.read()
            status = str(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        status = str(exc.code)
    except OSError:
        status = "ERR"
    counts.add(status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    halt = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: halt.set())
    signal.signal(signal.SIGINT, lambda *_: halt.set())
    counts = Counts()
    interval, due, sent, report = 1.0 / args.rps, time.monotonic(), 0, time.monotonic() + 2
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        while not halt.is_set():
            with counts.lock:
                busy = counts.in_flight >= MAX_IN_FLIGHT
                if busy:
                    counts.by_status["skipped"] += 1
                else:
                    counts.in_flight += 1
            if not busy:
                pool.submit(call, args.urls[sent % len(args.urls)], args.timeout, counts)
                sent += 1
            now = time.monotonic()
            if now >= report:
                with counts.lock:
                    print(dict(counts.by_status), flush=True)
                report = now + 2
            due += interval
            halt.wait(max(0.0, due - time.monotonic()))  # pacing to the rate
        pool.shutdown(wait=False, cancel_futures=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
