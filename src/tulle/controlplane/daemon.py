"""Running the control plane: in the foreground, in the background, and stopping it.

One control plane per state directory, enforced by an exclusive lock that the kernel releases
when the process dies, however it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import ipaddress
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

from tulle.client import ApiClient
from tulle.controlplane import storage
from tulle.errors import ControlPlaneUnavailable, StateError, TulleError, UsageError
from tulle.identity.spiffe import trust_domain_problem
from tulle.local import acquire_state_lock, state_lock_held, state_lock_pid, tail
from tulle.settings import (
    DEFAULT_API_PORT,
    DEFAULT_IDENTITY_PORT,
    DEFAULT_TRUST_DOMAIN,
    DEFAULT_XDS_PORT,
    ControlPlaneEndpoint,
    StatePaths,
    create_private,
    load_or_create_metrics_token,
    load_or_create_token,
    open_private,
)

log = logging.getLogger("tulle.controlplane")

START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class StartOptions:
    """What `tulle up` may set. None: the last run's value (or the default on first start)."""

    api_port: int | None = None
    xds_port: int | None = None
    identity_port: int | None = None
    trust_domain: str | None = None
    join_token_ttl_s: float | None = None
    stale_after_s: float | None = None
    store: str | None = None  # a store URL (sqlite, etcd://..., etcds://...)
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    ca_encryption_key: str | None = None
    listen: str | None = None  # the agents' ports' address, for other hosts
    xds_workers: int | None = None  # None: xds.workers.pool.default_workers()
    history_keep: int | None = None  # revisions whose changes the history keeps
    compact_every_s: float | None = None  # how often the history (and etcd) is compacted

    def to_args(self) -> list[str]:
        args = []
        for flag, value in (("--api-port", self.api_port), ("--xds-port", self.xds_port),
                            ("--identity-port", self.identity_port),
                            ("--trust-domain", self.trust_domain),
                            ("--join-token-ttl", self.join_token_ttl_s),
                            ("--stale-after", self.stale_after_s),
                            ("--store", self.store), ("--etcd-ca", self.etcd_ca),
                            ("--etcd-cert", self.etcd_cert), ("--etcd-key", self.etcd_key),
                            ("--ca-encryption-key", self.ca_encryption_key),
                            ("--listen", self.listen), ("--xds-workers", self.xds_workers),
                            ("--history-keep", self.history_keep),
                            ("--compact-every", self.compact_every_s)):
            if value is not None:
                args += [flag, str(value)]
        return args


def resolve_endpoint(paths: StatePaths, options: StartOptions) -> ControlPlaneEndpoint:
    """Values given now win; otherwise the last run's, so that proxies find us again.

    A port of 0 lets the kernel choose. The record holds the ports a control plane actually
    bound (it saves it once bound), so a restart without flags reuses the chosen ones."""
    try:
        previous: ControlPlaneEndpoint | None = ControlPlaneEndpoint.load(paths)
    except TulleError:
        previous = None
    trust_domain = options.trust_domain or (previous.trust_domain if previous
                                            else DEFAULT_TRUST_DOMAIN)
    if (why := trust_domain_problem(trust_domain)) is not None:
        raise UsageError(f"--trust-domain: {why}")
    return ControlPlaneEndpoint(
        api_port=_port(options.api_port, previous.api_port if previous else DEFAULT_API_PORT),
        xds_port=_port(options.xds_port, previous.xds_port if previous else DEFAULT_XDS_PORT),
        identity_port=_port(options.identity_port, previous.identity_port if previous
                            else DEFAULT_IDENTITY_PORT),
        trust_domain=trust_domain,
        listen=listen_address(options.listen) if options.listen is not None
        else (previous.listen if previous else ""),
    )


def listen_address(given: str) -> str:
    """``--listen``: one IP address of this host that agents on other hosts reach (it is
    handed to them as is, so a wildcard will not do); "" or loopback: this host only."""
    if given in ("", "127.0.0.1", "localhost"):
        return ""
    try:
        address = ipaddress.ip_address(given)
    except ValueError:
        raise UsageError(f"--listen {given!r} is not an IP address",
                         hint="give this host's address that the other hosts reach, e.g. "
                              "--listen 10.0.0.5") from None
    if address.is_unspecified:
        raise UsageError(f"--listen {given}: agents are told this address, so it must be "
                         "one they can reach, not a wildcard",
                         hint="give this host's address, e.g. --listen 10.0.0.5")
    return str(address)


def resolve_store(paths: StatePaths, options: StartOptions) -> storage.StoreSpec:
    """The store this start would open (checked, not contacted): --store now, else the last
    run's, else SQLite."""
    return storage.resolve(paths, options.store, ca=options.etcd_ca, cert=options.etcd_cert,
                           key=options.etcd_key, ca_key_file=options.ca_encryption_key)


def _port(given: int | None, otherwise: int) -> int:
    return otherwise if given is None else given  # 0 is a choice: "any free port"


# The control plane holds millions of long-lived objects (sessions, certificates, snapshots,
# proxies' configs) and builds short-lived ones on every rebuild. With CPython's default
# thresholds (700, 10, 10) a snapshot lives long enough to be promoted, and full collections
# followed: with 1,000 services and 1,500 workloads registering, one every 0.4 s, 15-130 ms
# each (28 in 25 s, 2.1 s in all), stalling pushes and API calls. Collecting the young
# generation less often lets snapshots die young: 1 full collection (65 ms) in the same run.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def run_foreground(paths: StatePaths, options: StartOptions = StartOptions(), *,
                   log_to_stderr: bool = True) -> int:
    # Everything this process creates is its user's alone, whatever umask it was started
    # with (the store's journals, rotated logs, CA files): it runs no one else's code.
    os.umask(0o077)
    tune_gc()
    paths.ensure()
    lock = acquire_state_lock(paths)
    try:
        endpoint = resolve_endpoint(paths, options)
        store = resolve_store(paths, options)
        token = load_or_create_token(paths)
        load_or_create_metrics_token(paths)
        _configure_logging(paths, log_to_stderr)
        # Saved now (the trust domain is fixed at first start, even if binding fails), and
        # again by the control plane once bound, with the ports the kernel chose for 0s.
        endpoint.save(paths)
        return asyncio.run(_serve(paths, endpoint, token, options, store))
    finally:
        lock.close()


async def _serve(paths: StatePaths, endpoint: ControlPlaneEndpoint, token: str,
                 options: StartOptions, spec: storage.StoreSpec) -> int:
    from tulle.controlplane.app import ControlPlane

    extra: dict[str, Any] = {}
    if options.join_token_ttl_s is not None:
        extra["join_token_ttl_s"] = options.join_token_ttl_s
    if options.stale_after_s is not None:
        extra["stale_after_s"] = options.stale_after_s
    if options.history_keep is not None:
        extra["history_keep"] = options.history_keep
    if options.compact_every_s is not None:
        extra["compact_every_s"] = options.compact_every_s
    if options.xds_workers is not None:
        extra["xds_workers"] = options.xds_workers
    else:
        from tulle.xds.workers.pool import default_workers

        extra["xds_workers"] = default_workers()
    store = storage.open_store(paths, spec)
    ca_files = storage.ca_files(spec, store)
    if ca_files is not None:  # replicas share the tokens as they share the CA
        token = storage.share_secret(ca_files, "api-token", token, paths.token_file)
        storage.share_secret(ca_files, "metrics-token", load_or_create_metrics_token(paths),
                             paths.metrics_token_file)
    storage.save(paths, spec)  # opened: the next `tulle up` without --store opens it again
    log.info("store: %s", spec.describe)
    cp = ControlPlane(paths, endpoint, token, store=store, ca_files=ca_files, **extra)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, cp.request_stop)
    try:
        await cp.start()
    except OSError as exc:
        await cp.stop()
        if exc.errno == errno.EADDRINUSE or "cannot listen" in str(exc):
            raise StateError(
                f"a port of the control plane is taken (API {endpoint.api_port}, "
                f"xDS {endpoint.xds_port}, identity {endpoint.identity_port}): {exc}",
                hint="pick free ports with `tulle up --api-port N --xds-port M "
                     "--identity-port K`") from exc
        raise
    await cp.wait_stopped()
    await cp.stop()
    return 0


def start_background(paths: StatePaths, options: StartOptions = StartOptions()
                     ) -> dict[str, Any]:
    """Start a detached control plane and wait until its API answers."""
    paths.ensure()
    command = [sys.executable, "-m", "tulle.controlplane", "--state-dir", str(paths.root),
               "--detached", *options.to_args()]
    try:
        start_of_run = paths.log_file.stat().st_size  # earlier runs' lines are not this one's
    except OSError:
        start_of_run = 0
    with _open_log(paths) as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise StateError(f"the control plane exited during start-up (code {code}):\n"
                             + tail(paths.log_file, 15, since=start_of_run),
                             hint=f"see {paths.log_file}")
        with contextlib.suppress(TulleError):
            status: dict[str, Any] = ApiClient.from_state(paths, timeout=1.0).get("/v1/status")
            if status.get("pid") == process.pid:
                return status
        time.sleep(0.05)
    process.terminate()
    raise StateError("the control plane did not become ready in time",
                     hint=f"see {paths.log_file}")


def running_status(paths: StatePaths) -> dict[str, Any] | None:
    """The status of the control plane of ``paths``, or None when none is running."""
    if not state_lock_held(paths):
        return None
    try:
        status: dict[str, Any] = ApiClient.from_state(paths, timeout=3.0).get("/v1/status")
    except ControlPlaneUnavailable:
        return None
    return status


def stop(paths: StatePaths, timeout: float = 15.0) -> bool:
    """Stop the control plane; False if none was running."""
    if not state_lock_held(paths):
        return False
    pid = state_lock_pid(paths)
    try:
        ApiClient.from_state(paths, timeout=3.0).post("/v1/shutdown")
    except TulleError:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not state_lock_held(paths):
            return True
        time.sleep(0.05)
    raise StateError(f"the control plane (pid {pid}) did not stop within {timeout:.0f}s",
                     hint=f"kill it with `kill {pid}`")


# -- logging ---------------------------------------------------------------------------------

def _open_log(paths: StatePaths) -> IO[bytes]:
    return os.fdopen(open_private(paths.log_file), "ab")


def _configure_logging(paths: StatePaths, to_stderr: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Detached, stderr already is the log file (it also catches crashes): write there once.
    handler: logging.Handler = logging.StreamHandler()
    if to_stderr:
        create_private(paths.log_file)  # the handler keeps an existing file's mode
        file_handler = logging.handlers.RotatingFileHandler(paths.log_file, maxBytes=10 << 20,
                                                            backupCount=3)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    handler.setFormatter(formatter)
    root.addHandler(handler)
