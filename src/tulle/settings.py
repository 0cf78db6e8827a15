"""Where tulle keeps its state, and how the pieces find the control plane.

Nothing here runs at import time: entry points resolve a :class:`StatePaths` from the
command line and environment and pass it down explicitly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from tulle.errors import ControlPlaneUnavailable, StateError

DEFAULT_API_PORT = 15700
DEFAULT_XDS_PORT = 15710
DEFAULT_IDENTITY_PORT = 15712
DEFAULT_TRUST_DOMAIN = "tulle.local"
LOOPBACK = "127.0.0.1"
# After a listener changes (a policy, tracing, a tap), connections accepted with its old
# config drain: each closes after its next response, and requests in flight have this long to
# finish. The agent starts Envoy with it; the control plane waits it out before a tap counts
# as attached.
SIDECAR_DRAIN_TIME_S = 5


@dataclass(frozen=True)
class StatePaths:
    """The layout of one state directory (``~/.tulle`` by default)."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> StatePaths:
        env = os.environ if environ is None else environ
        raw = explicit or env.get("TULLE_HOME") or Path.home() / ".tulle"
        return cls(Path(raw).expanduser().absolute())

    @property
    def token_file(self) -> Path:
        return self.root / "api-token"

    @property
    def metrics_token_file(self) -> Path:
        """A read-only credential for scraping /metrics (Prometheus's credentials_file)."""
        return self.root / "metrics-token"

    @property
    def endpoint_file(self) -> Path:
        return self.root / "controlplane.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "controlplane.lock"

    @property
    def database(self) -> Path:
        return self.root / "store.db"

    @property
    def log_file(self) -> Path:
        return self.root / "controlplane.log"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def workloads_dir(self) -> Path:
        return self.root / "workloads"

    def workload_dir(self, namespace: str, name: str) -> Path:
        return self.workloads_dir / f"{name}.{namespace}"

    def identity_dir(self, namespace: str, name: str) -> Path:
        """A workload's keys and certificates. Its agent writes them; the control plane
        points its Envoy at the key in here, never at a path a request names."""
        return self.workload_dir(namespace, name) / "identity"

    def ensure(self) -> None:
        """Create the directory, private to the user (0700): it holds the API token and keys.
        An existing one is tightened to 0700 (see :func:`ensure_private_dir`)."""
        ensure_private_dir(self.root)
        ensure_private_dir(self.workloads_dir)


@dataclass(frozen=True)
class ControlPlaneEndpoint:
    """The addresses a control plane listens on, persisted so a restart reuses them."""

    api_port: int
    xds_port: int
    host: str = LOOPBACK
    # Agents get and renew certificates here, over TLS.
    identity_port: int = DEFAULT_IDENTITY_PORT
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    # `tulle up --listen ADDR`: where the agents' ports (xDS, identity) listen, for agents on
    # other hosts; empty: ``host``. The API (operators) stays on ``host``, loopback.
    listen: str = ""

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def agent_host(self) -> str:
        """Where agents reach the xDS and identity ports."""
        return self.listen or self.host

    @property
    def xds_tls(self) -> bool:
        """Whether xDS is served over TLS: always once it is reachable from other hosts."""
        return not is_loopback(self.agent_host)

    def save(self, paths: StatePaths) -> None:
        write_private(paths.endpoint_file, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, paths: StatePaths) -> ControlPlaneEndpoint:
        try:
            data = json.loads(paths.endpoint_file.read_text())
            return cls(api_port=int(data["api_port"]), xds_port=int(data["xds_port"]),
                       host=str(data.get("host", LOOPBACK)),
                       identity_port=int(data.get("identity_port", DEFAULT_IDENTITY_PORT)),
                       trust_domain=str(data.get("trust_domain", DEFAULT_TRUST_DOMAIN)),
                       listen=str(data.get("listen", "")))
        except FileNotFoundError as exc:
            raise ControlPlaneUnavailable(
                f"no control plane has been started with state directory {paths.root}",
                hint="start one with `tulle up` (or point at another with --state-dir)",
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{paths.endpoint_file} is corrupt: {exc}",
                hint="delete it and run `tulle up` again; resources are kept in store.db",
            ) from exc


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def workload_key_file(identity_dir: Path, generation: int) -> Path:
    """Key number ``generation`` in a workload's identity directory: the first is 1, and
    each renewal makes the next (the agent and the control plane both name it so)."""
    return identity_dir / f"key-{generation}.pem"


# -- private files and directories: whatever the umask (a umask of 000 would otherwise make
# files 0666), tulle's state is its user's alone.

def ensure_private_dir(path: Path) -> None:
    """``path`` exists, belongs to us and is 0700. Missing parents are made 0700 too; an
    existing directory with a looser mode is tightened (it is tulle's own: nothing else is
    meant to read it), one that belongs to another user is refused (it could swap our files)."""
    try:
        for directory in [*reversed(path.parents), path]:
            if not directory.is_dir():
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)
        info = path.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise StateError(f"{path} is not a directory",
                             hint="choose another --state-dir (or TULLE_HOME)")
        if info.st_uid != os.geteuid():
            raise StateError(f"{path} belongs to another user (uid {info.st_uid})",
                             hint="tulle's state must be its user's own: choose another "
                                  "--state-dir (or TULLE_HOME), or chown the directory")
        if stat.S_IMODE(info.st_mode) != 0o700:
            path.chmod(0o700)
    except OSError as exc:
        raise StateError(f"cannot create or use the directory {path}: {exc.strerror}",
                         hint="choose a writable directory with --state-dir or TULLE_HOME"
                         ) from exc


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """A file descriptor on ``path``, created 0600 or tightened to 0600 if it exists."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Path) -> None:
    """Make sure ``path`` exists and is 0600, for a file another component (a log handler,
    Envoy) opens later: opening an existing file keeps its mode."""
    os.close(open_private(path))


def write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path``, readable by the owner only (mode 0600)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # the umask may have taken bits away
            handle.write(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_create_token(paths: StatePaths) -> str:
    """The API token, generated on first start and stored 0600 in the state directory."""
    try:
        return read_token(paths)
    except ControlPlaneUnavailable:
        token = secrets.token_urlsafe(32)
        write_private(paths.token_file, token + "\n")
        return token


def read_token(paths: StatePaths) -> str:
    try:
        token = paths.token_file.read_text().strip()
    except FileNotFoundError as exc:
        raise ControlPlaneUnavailable(
            f"no API token in {paths.root}",
            hint="start the control plane with `tulle up`; it creates the token",
        ) from exc
    except PermissionError as exc:
        raise StateError(
            f"cannot read the API token {paths.token_file}",
            hint="run tulle as the user who started the control plane",
        ) from exc
    if not token:
        raise StateError(f"the API token file {paths.token_file} is empty",
                         hint="delete it and restart the control plane with `tulle up`")
    return token


def load_or_create_metrics_token(paths: StatePaths) -> str:
    if paths.metrics_token_file.exists():
        return paths.metrics_token_file.read_text().strip()
    token = secrets.token_urlsafe(32)
    write_private(paths.metrics_token_file, token + "\n")
    return token


def read_metrics_token(paths: StatePaths) -> str | None:
    """None when the control plane never made one (an older state directory)."""
    try:
        return paths.metrics_token_file.read_text().strip() or None
    except OSError:
        return None
