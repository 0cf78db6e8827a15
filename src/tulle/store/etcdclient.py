"""A small etcd v3 client over etcd's JSON gateway (``/v3/kv/*``), with no dependency beyond
the standard library.

Only what the store needs: ranges, and transactions that compare modification revisions
(optimistic concurrency between control-plane replicas). Keys and values are bytes; the
gateway carries them base64-encoded. Each call tries the endpoints in turn, starting with the
last one that answered; an endpoint that failed to answer (down, frozen, cut off) is tried
last for a while, so a lost member costs one timeout, not one per call: calls from every
thread (a lease's renewal, a watch, a write) share what each learned.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tulle.errors import StateError, UsageError

DEFAULT_TIMEOUT_S = 5.0
RETRY_MIN_S, RETRY_MAX_S = 0.1, 1.0  # between rounds over the endpoints
SUSPECT_S = 10.0  # how long an endpoint that failed to answer is tried last
# A watch stream silent this long is opened again (from the last revision seen): a quiet
# prefix costs one request per period, and a member cut off blinds a watch no longer.
WATCH_IDLE_S = 10.0
MAX_RESPONSE = 64 << 20  # an answer larger than this is refused, not read
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class WatchEvent:
    deleted: bool
    kv: KeyValue


class WatchCompacted(Exception):
    """The revision a watch asked to start from is compacted away: read everything again."""


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes


    lease: int = 0  # the key goes when the lease expires (0: no lease)


@dataclass(frozen=True)
class Delete:
    key: bytes
    end: bytes | None = None  # every key from ``key`` up to (not including) this one


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's range_end)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def parse_endpoints(url: str) -> tuple[tuple[str, ...], bool]:
    """``etcd://h1:2379,h2:2379`` (plain HTTP, loopback only) or ``etcds://...`` (TLS): the
    base URLs, and whether TLS is on."""
    parts = urlsplit(url)
    if parts.scheme not in ("etcd", "etcds"):
        raise UsageError(f"--store {url}: unknown store scheme {parts.scheme!r}",
                         hint="use sqlite (the default), etcd://HOST:PORT[,HOST:PORT...] "
                              "or etcds://... for etcd over TLS")
    hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
    if not hosts:
        raise UsageError(f"--store {url}: no etcd endpoint",
                         hint="name at least one: etcd://127.0.0.1:2379")
    tls = parts.scheme == "etcds"
    for host in hosts:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not tls and name not in LOOPBACK:
            raise UsageError(
                f"--store {url}: {host} is not a loopback address, and etcd:// is plain HTTP",
                hint="the store holds workloads' credentials: reach etcd over TLS with "
                     "etcds:// and --etcd-ca/--etcd-cert/--etcd-key")
    scheme = "https" if tls else "http"
    return tuple(f"{scheme}://{host}" for host in hosts), tls


class EtcdClient:
    def __init__(self, endpoints: Sequence[str], *, context: ssl.SSLContext | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._endpoints = list(endpoints)
        self._context = context
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._preferred = 0
        self._suspect_until = [0.0] * len(self._endpoints)

    def order(self) -> list[int]:
        """The endpoints' indexes in the order a call tries them: from the last one that
        answered round the ring, those that failed lately last (the earliest to clear
        first)."""
        now = time.monotonic()
        with self._lock:
            ring = [(self._preferred + step) % len(self._endpoints)
                    for step in range(len(self._endpoints))]
            return sorted(ring, key=lambda i: (self._suspect_until[i] > now,
                                               self._suspect_until[i]))

    def _answered(self, index: int) -> None:
        with self._lock:
            self._preferred = index
            self._suspect_until[index] = 0.0

    def _failed(self, index: int) -> None:
        with self._lock:
            self._suspect_until[index] = time.monotonic() + SUSPECT_S

    def _call(self, path: str, body: dict[str, Any], *, timeout_s: float | None = None,
              within_s: float | None = None) -> dict[str, Any]:
        """One request, to the endpoints in turn, again and again for a while when none
        answers or etcd is between leaders (503: a member lost, an election under way).
        ``timeout_s``: the wait for each endpoint; ``within_s``: for all of them (twice the
        timeout unless said)."""
        data = json.dumps(body).encode()
        errors: list[str] = []
        timeout = self._timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + (2 * timeout if within_s is None else within_s)
        pause = RETRY_MIN_S
        while True:
            for index in self.order():
                left = deadline - time.monotonic()
                if left <= 0 and errors:
                    break
                answer = self._try(index, path, data, errors, max(0.1, min(timeout, left)))
                if answer is not None:
                    self._answered(index)
                    return answer
                self._failed(index)
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            pause = min(RETRY_MAX_S, pause * 2)
        raise StateError("no etcd endpoint answered: " + "; ".join(errors[-len(self._endpoints):]),
                         hint="check etcd runs, is reachable and has quorum (`etcdctl endpoint "
                              "health --endpoints ...`); nothing was changed")

    def _try(self, index: int, path: str, data: bytes, errors: list[str], timeout_s: float
             ) -> dict[str, Any] | None:
        base = self._endpoints[index]
        request = urllib.request.Request(base + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s,
                                        context=self._context) as response:
                raw = response.read(MAX_RESPONSE + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(4096).decode(errors="replace").strip()
            if exc.code in (502, 503, 504):  # between leaders, or no quorum: another try
                errors.append(f"{base}: {exc.code} {detail}")
                return None
            raise StateError(f"etcd at {base} refused {path}: {exc.code} {detail}",
                             hint="check etcd's version (3.4 or later) and its "
                                  "permissions for this client") from exc
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"{base}: {exc}")
            return None
        if len(raw) > MAX_RESPONSE:
            raise StateError(f"etcd answered {path} with more than {MAX_RESPONSE} bytes",
                             hint="the store's prefix holds too much; check what else "
                                  "writes under it")
        answer: dict[str, Any] = json.loads(raw)
        return answer

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self._endpoints)

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self._context

    def header_revision(self) -> int:
        """etcd's current revision (a range that returns no key)."""
        answer = self._call("/v3/kv/range", {"key": _b64(b"\0"), "count_only": True})
        return int(answer["header"]["revision"])

    def watch(self, prefix: bytes, start_revision: int, *, idle_s: float = WATCH_IDLE_S
              ) -> Iterator[tuple[int, list[WatchEvent]]]:
        """The changes under ``prefix`` from ``start_revision`` on, as (revision, events),
        until the stream ends (an error, or ``idle_s`` without a byte: the caller watches
        again from the last revision it saw). Raises WatchCompacted when etcd no longer
        has that revision."""
        body = json.dumps({"create_request": {
            "key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
            "start_revision": str(start_revision), "progress_notify": True}}).encode()
        index = self.order()[0]
        url = self._endpoints[index] + "/v3/watch"
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=idle_s,
                                        context=self._context) as response:
                for line in response:
                    if len(line) > MAX_RESPONSE:
                        raise StateError("an etcd watch answer was too large")
                    result = json.loads(line).get("result", {})
                    if result.get("compact_revision") or result.get("canceled"):
                        raise WatchCompacted(str(result.get("cancel_reason", "")))
                    events = [WatchEvent(
                        e.get("type") == "DELETE",
                        KeyValue(base64.b64decode(e["kv"]["key"]),
                                 base64.b64decode(e["kv"].get("value", "")),
                                 int(e["kv"].get("mod_revision", 0))))
                        for e in result.get("events", ())]
                    revision = int(result.get("header", {}).get("revision", 0))
                    yield revision, events
        except TimeoutError:  # silent for idle_s: an idle prefix, or a member cut off
            return
        except (OSError, ssl.SSLError, ValueError):
            self._failed(index)
            return

    def grant(self, ttl_s: int) -> int:
        """A new lease: keys put with it are deleted when it is not kept alive for ttl_s."""
        return int(self._call("/v3/lease/grant", {"TTL": ttl_s})["ID"])

    def keep_alive(self, lease: int, *, timeout_s: float | None = None,
                   within_s: float | None = None) -> int:
        """Renew ``lease``: the seconds it lives from now, 0 when it has already expired (its
        keys are gone)."""
        answer = self._call("/v3/lease/keepalive", {"ID": str(lease)}, timeout_s=timeout_s,
                            within_s=within_s)
        return int(answer.get("result", {}).get("TTL", 0))

    def compact(self, revision: int) -> bool:
        """Drop etcd's record of every key's values before ``revision`` (watches that start
        earlier then fail with WatchCompacted); False when it was compacted that far
        already."""
        try:
            self._call("/v3/kv/compaction", {"revision": str(revision)})
        except StateError as exc:
            if "compacted" in exc.message:
                return False
            raise
        return True

    def get(self, key: bytes) -> KeyValue | None:
        found = self.range(key, None)
        return found[0] if found else None

    def range(self, key: bytes, end: bytes | None, *, limit: int = 0,
              descending: bool = False) -> list[KeyValue]:
        body: dict[str, Any] = {"key": _b64(key)}
        if end is not None:
            body["range_end"] = _b64(end)
        if limit:
            body["limit"] = limit
        if descending:
            body.update(sort_order="DESCEND", sort_target="KEY")
        answer = self._call("/v3/kv/range", body)
        return [KeyValue(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")),
                         int(kv.get("mod_revision", 0))) for kv in answer.get("kvs", ())]

    def count(self, prefix: bytes) -> int:
        """How many keys start with ``prefix`` (counted by etcd; no value is sent)."""
        answer = self._call("/v3/kv/range", {"key": _b64(prefix),
                                             "range_end": _b64(prefix_end(prefix)),
                                             "count_only": True})
        return int(answer.get("count", 0))

    def prefix(self, prefix: bytes, *, limit: int = 0, descending: bool = False
               ) -> list[KeyValue]:
        return self.range(prefix, prefix_end(prefix), limit=limit, descending=descending)

    def transaction(self, unchanged: Sequence[tuple[bytes, int]],
                    writes: Sequence[Put | Delete]) -> bool:
        """Apply ``writes`` at once if every key in ``unchanged`` still has its modification
        revision (0: the key does not exist); False, with nothing written, otherwise."""
        compare = [{"key": _b64(key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": str(revision)} for key, revision in unchanged]
        success = [{"request_put": {"key": _b64(w.key), "value": _b64(w.value),
                                    **({"lease": str(w.lease)} if w.lease else {})}}
                   if isinstance(w, Put) else {"request_delete_range": {
                       "key": _b64(w.key), **({"range_end": _b64(w.end)} if w.end else {})}}
                   for w in writes]
        answer = self._call("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(answer.get("succeeded", False))
