"""Which store a control plane keeps its resources in: SQLite in the state directory (the
default, for one host), or etcd (``--store etcd://...``), which replicas on several hosts can
share.

The choice is remembered in the state directory (``store.json``), like the ports: `tulle up`
without ``--store`` opens the store the last run used, so a restart never quietly falls back
to an empty SQLite file while the mesh's config sits in etcd.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

from tulle.controlplane.cavault import SealedFiles, encryption_key
from tulle.errors import StateError, UsageError
from tulle.identity.cafiles import CaFiles, DirectoryFiles
from tulle.identity.hostjoin import ListedFiles
from tulle.settings import StatePaths, write_private
from tulle.store.base import Store
from tulle.store.etcd import EtcdStore
from tulle.store.etcdclient import EtcdClient, parse_endpoints
from tulle.store.sqlite import SqliteStore

SQLITE = "sqlite"
DEFAULT_PREFIX = "/tulle/"


@dataclass(frozen=True)
class StoreSpec:
    url: str = SQLITE
    ca: str | None = None  # etcds://: the CA that signed etcd's server certificates
    cert: str | None = None  # etcds://: this replica's client certificate and key
    key: str | None = None
    prefix: str = DEFAULT_PREFIX
    # This control plane's name among the replicas that share an etcd store: its workload
    # registrations are kept under it. Made at the first start, then kept in store.json.
    replica: str = ""
    ca_key_file: str | None = None  # etcd: the key that seals the CA's files (cavault)

    @property
    def describe(self) -> str:
        return "sqlite (store.db in the state directory)" if self.url == SQLITE else self.url


def _file(path: Path) -> Path:
    return path / "store.json"


def resolve(paths: StatePaths, url: str | None, *, ca: str | None = None,
            cert: str | None = None, key: str | None = None,
            ca_key_file: str | None = None) -> StoreSpec:
    """The store to open: the one given now, else the last run's, else SQLite. Checks the
    URL, the TLS files and the CA's encryption key (UsageError) without contacting anything."""
    spec = _resolve(paths, url, ca=ca, cert=cert, key=key)
    if spec.url == SQLITE:
        if ca_key_file is not None:
            raise UsageError("--ca-encryption-key is for a shared store",
                             hint="with SQLite the CA stays in the state directory's ca/")
        return spec
    if ca_key_file is not None:
        spec = dataclasses.replace(spec, ca_key_file=str(Path(ca_key_file).absolute()))
    encryption_key(spec.ca_key_file)  # present and well formed, or a UsageError now
    return spec


def _resolve(paths: StatePaths, url: str | None, *, ca: str | None, cert: str | None,
             key: str | None) -> StoreSpec:
    previous = load(paths)
    replica = previous.replica or secrets.token_hex(4)
    if url is None:
        spec = dataclasses.replace(previous, replica=replica)
        if any((ca, cert, key)) and spec.url == SQLITE:
            raise UsageError("--etcd-ca/--etcd-cert/--etcd-key need an etcd store",
                             hint="add --store etcds://HOST:PORT[,HOST:PORT...]")
        return spec
    if url == SQLITE:
        return StoreSpec(replica=replica)
    _, tls = parse_endpoints(url)
    if tls and ca is None:
        raise UsageError(f"--store {url}: etcds:// needs --etcd-ca",
                         hint="pass the CA file that signed etcd's server certificates; add "
                              "--etcd-cert and --etcd-key when etcd asks clients for one")
    if (cert is None) != (key is None):
        raise UsageError("--etcd-cert and --etcd-key go together",
                         hint="pass both: the client certificate and its private key")
    for flag, given in (("--etcd-ca", ca), ("--etcd-cert", cert), ("--etcd-key", key)):
        if given is not None and not Path(given).is_file():
            raise UsageError(f"{flag} {given}: no such file", hint="give the file's path")
    ca, cert, key = (str(Path(p).absolute()) if p else None for p in (ca, cert, key))
    return StoreSpec(url, ca=ca, cert=cert, key=key, replica=replica,
                     ca_key_file=previous.ca_key_file if previous.url == url else None)


def load(paths: StatePaths) -> StoreSpec:
    try:
        raw = json.loads(_file(paths.root).read_text())
    except FileNotFoundError:
        return StoreSpec()
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {_file(paths.root)}: {exc}",
                         hint="fix or delete it, and pass --store to `tulle up`") from exc
    return StoreSpec(**{k: v for k, v in raw.items() if k in StoreSpec.__dataclass_fields__})


def save(paths: StatePaths, spec: StoreSpec) -> None:
    write_private(_file(paths.root), json.dumps(asdict(spec), indent=2) + "\n")


def ca_files(spec: StoreSpec, store: Store) -> CaFiles | None:
    """Where the CA keeps its files: the shared store (sealed), or None for ca/."""
    if not isinstance(store, EtcdStore):
        return None
    return SealedFiles(store, encryption_key(spec.ca_key_file))


class StoreFiles:
    """Plain files in the shared store (``tulle.identity.hostjoin.ListedFiles``): records
    that hold no secret, such as join tokens' digests."""

    def __init__(self, store: EtcdStore, area: str) -> None:
        self._store = store
        self._area = area

    @property
    def where(self) -> str:
        return f"the shared store (etcd, {self._area}/)"

    def names(self) -> list[str]:
        return self._store.file_names(self._area)

    def read(self, name: str) -> bytes | None:
        return self._store.read_file(self._area, name)

    def write(self, name: str, data: bytes) -> None:
        self._store.write_file(self._area, name, data)

    def create(self, name: str, data: bytes) -> bool:
        return self._store.create_file(self._area, name, data)

    def swap(self, name: str, expected: bytes | None, data: bytes) -> bool:
        found, revision = self._store.read_file_revision(self._area, name)
        if found != expected:
            return False
        return self._store.swap_file(self._area, name, revision, data)


def join_files(paths: StatePaths, store: Store) -> ListedFiles:
    """Where host join tokens are kept: with the store, so every replica redeems them."""
    if isinstance(store, EtcdStore):
        return StoreFiles(store, "joins")
    return DirectoryFiles(paths.root / "joins")


def share_secret(files: CaFiles, name: str, local: str, path: Path) -> str:
    """One secret for every replica (the API token, the metrics token): the first replica's
    goes into the shared store, sealed; the others take it, in their state directory too,
    so that the CLI and the agents of any host present the one every replica accepts."""
    if files.create(name, local.encode()):
        return local
    shared = (files.read(name) or b"").decode()
    if not shared:
        raise StateError(f"the shared store's {name} is empty",
                         hint="restore the store from a backup")
    if shared != local:
        write_private(path, shared + "\n")
    return shared


def open_store(paths: StatePaths, spec: StoreSpec) -> Store:
    if spec.url == SQLITE:
        return SqliteStore(paths.database)
    endpoints, tls = parse_endpoints(spec.url)
    context = None
    if tls:
        try:
            context = ssl.create_default_context(cafile=spec.ca)
            if spec.cert and spec.key:
                context.load_cert_chain(spec.cert, spec.key)
        except (OSError, ssl.SSLError) as exc:
            raise StateError(f"cannot load the etcd TLS files: {exc}",
                             hint="check --etcd-ca, --etcd-cert and --etcd-key") from exc
    store = EtcdStore(EtcdClient(endpoints, context=context), prefix=spec.prefix,
                      replica=spec.replica or "r")
    store.revision()  # fails now, with the endpoints named, if no etcd member answers
    return store
