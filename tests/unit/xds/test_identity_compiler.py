"""ConfigCompiler with workload identity: consistent mTLS configs, and no private key in them."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.identity.certs import TRUST_DOMAIN, key_pem
from tests.unit.xds import consistency
from tests.unit.xds.envoy_side import CDS, LDS, SDS
from tests.unit.xds.identity_meshes import IdentityMesh, certify, identity_mesh, with_account
from tests.unit.xds.meshes import Manifest, mesh, proxy, service, workload
from tests.unit.xds.tls import SDS_NAMES, max_connection_duration, peer_ids, upstream_tls
from tulle.identity.ca import CertificateAuthority
from tulle.model.workload import Workload
from tulle.xds import names
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.config import ProxyConfig

CLIENT = workload("web-1", app_port=None, upstreams={"books": 9000, "db": 9001,
                                                     "authors": 9002})


def sid(namespace: str, account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{account}"


def mesh_resource(mode: str = "STRICT", lifetime: str | None = None) -> Manifest:
    spec: Manifest = {"mtls": {"mode": mode}}
    if lifetime is not None:
        spec["certificates"] = {"workloadLifetime": lifetime}
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh",
            "metadata": {"name": "default"}, "spec": spec}


def with_mtls(manifest: Manifest, mode: str) -> Manifest:
    return {**manifest, "spec": {**manifest["spec"], "mtls": {"mode": mode}}}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path_factory.mktemp("ca") / "ca", TRUST_DOMAIN)


Build = Callable[..., IdentityMesh]  # (workloads, manifests=()) -> a mesh where all are certified


@pytest.fixture
def build(ca: CertificateAuthority, tmp_path: Path) -> Build:
    def make(workloads: Sequence[Workload], manifests: Sequence[Manifest] = ()) -> IdentityMesh:
        return identity_mesh(ca, tmp_path, workloads, manifests)
    return make


def compile_all(built: IdentityMesh) -> dict[str, ProxyConfig]:
    compiler = ConfigCompiler()
    return {node: compiler.compile(built.snapshot, proxy(built.snapshot, node))
            for node in built.snapshot.workloads}


@dataclass(frozen=True)
class Case:
    id: str
    workloads: list[Workload]
    manifests: list[Manifest] = field(default_factory=list)


CASES = [
    Case("http server and client", [workload("books-1"), workload("books-2", address="10.0.0.2"),
                                    CLIENT]),
    Case("tcp service", [workload("db-1"), CLIENT], [service("db", "tcp")]),
    Case("permissive mesh, strict service", [workload("books-1"), workload("db-1"), CLIENT],
         [mesh_resource("PERMISSIVE", "1h"), with_mtls(service("books"), "STRICT"),
          service("db", "tcp")]),
    Case("accounts and namespaces",
         [with_account(workload("books-1"), "books-admin"),
          workload("web-1", namespace="shop", app_port=None, upstreams={"books.default": 9000})]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_proxy_gets_a_consistent_config_with_its_own_identity(build: Build,
                                                                    case: Case) -> None:
    built = build(case.workloads, case.manifests)
    for node, compiled in compile_all(built).items():
        assert consistency.problems(compiled) == [], node
        assert set(compiled.of_type(SDS)) == set(SDS_NAMES)
        identity = consistency.decoded(compiled, SDS)[names.IDENTITY_SECRET].tls_certificate
        certificate = built.snapshot.identity.certificates[node]
        assert identity.certificate_chain.inline_string == certificate.chain_pem
        assert identity.private_key.filename == certificate.key_path
        for name, cluster in consistency.decoded(compiled, CDS).items():
            if name.startswith("outbound|"):
                assert upstream_tls(cluster) is not None, f"{node}: {name} is plaintext"


def forbidden_bytes(key: ec.EllipticCurvePrivateKey) -> list[bytes]:
    """Every form in which a private key could leak: PEM, DER, the scalar, and the scalar in
    base64 at each of the three byte alignments a stream can put it in (only the characters
    that encode the scalar alone). Not the PEM's lines: a PKCS8 key carries its public key,
    which the certificate carries too, so a line of it may appear there rightly."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    aligned = []
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + scalar)
        first, last = -(-8 * shift // 6), (8 * shift + 8 * len(scalar)) // 6
        aligned.append(encoded[first:last])
    return [key_pem(key), der, scalar, *aligned]


def test_no_private_key_is_ever_in_the_config(build: Build, ca: CertificateAuthority) -> None:
    built = build(CASES[0].workloads)
    keys = [*built.keys.values(), *(a.key for a in (ca.issuer, *ca.anchors) if a.key)]
    assert len(keys) == 5
    for node, compiled in compile_all(built).items():
        for type_url in compiled.resources:
            for resource in compiled.of_type(type_url).values():
                for encoded in (resource.sotw_entry, resource.delta_entry):
                    flat = encoded.replace(b"\n", b"")  # PEM lines joined
                    for secret in (b for key in keys for b in forbidden_bytes(key)):
                        assert secret not in encoded and secret not in flat, \
                            f"{node}: {resource.name} leaks a key"


def test_callers_accept_only_the_identities_of_each_service(build: Build) -> None:
    built = build([with_account(workload("books-1"), "books-admin"), workload("books-2"),
                   workload("db-1"), CLIENT], [service("db", "tcp")])
    compiled = ConfigCompiler().compile(built.snapshot, proxy(built.snapshot, "web-1.default"))
    contexts = {name: upstream_tls(c) for name, c in consistency.decoded(compiled, CDS).items()
                if name.startswith("outbound|")}
    accepted = {name: (c.sni, peer_ids(c)) for name, c in contexts.items() if c is not None}
    assert accepted == {
        "outbound|books.default": ("books.default", [sid("default", "books"),
                                                     sid("default", "books-admin")]),
        "outbound|db.default": ("db.default", [sid("default", "db")]),
        "outbound|web.default": ("web.default", [sid("default", "web")]),
        # No instance yet: expect the default account, never "anyone in the trust domain".
        "outbound|authors.default": ("authors.default", [sid("default", "authors")]),
    }


# (Mesh resource, max_connection_duration of an HTTP cluster: min(1h, lifetime / 2))
LIFETIMES = [(None, 3600.0), (mesh_resource(lifetime="2h"), 3600.0),
             (mesh_resource(lifetime="1h"), 1800.0), (mesh_resource(lifetime="10s"), 5.0),
             (mesh_resource(lifetime="3s"), 1.5)]


@pytest.mark.parametrize(("resource", "expected"), LIFETIMES,
                         ids=["default 24h", "2h", "1h", "10s", "3s"])
def test_connections_are_recycled_within_half_a_certificate_lifetime(
        build: Build, resource: Manifest | None, expected: float) -> None:
    built = build([workload("books-1"), workload("db-1"), CLIENT],
                  [service("db", "tcp"), *([resource] if resource else [])])
    compiled = ConfigCompiler().compile(built.snapshot, proxy(built.snapshot, "web-1.default"))
    clusters = consistency.decoded(compiled, CDS)
    assert max_connection_duration(clusters["outbound|books.default"]) == expected
    assert max_connection_duration(clusters["outbound|db.default"]) is None


# (Mesh mode, Service override, protocol, filter chains of the inbound listener)
MODES = [(None, None, "http", ["STRICT"]), ("PERMISSIVE", None, "http", ["tls", "raw_buffer"]),
         ("PERMISSIVE", "STRICT", "http", ["STRICT"]), ("STRICT", "PERMISSIVE", "tcp",
                                                         ["tls", "raw_buffer"])]


@pytest.mark.parametrize(("mesh_mode", "override", "protocol", "chains"), MODES)
def test_the_inbound_listener_follows_the_effective_mode(
        build: Build, mesh_mode: str | None, override: str | None, protocol: str,
        chains: list[str]) -> None:
    manifests = [with_mtls(service("books", protocol), override) if override
                 else service("books", protocol)]
    manifests += [mesh_resource(mesh_mode)] if mesh_mode else []
    built = build([workload("books-1")], manifests)
    compiled = ConfigCompiler().compile(built.snapshot, proxy(built.snapshot, "books-1.default"))
    listener = consistency.decoded(compiled, LDS)["inbound"]
    found = [c.filter_chain_match.transport_protocol or "STRICT" for c in listener.filter_chains]
    assert found == chains
    assert listener.filter_chains[0].HasField("transport_socket")


def test_without_a_trust_domain_everything_is_plaintext() -> None:
    snapshot = mesh(1, [workload("books-1"), workload("db-1"), CLIENT],
                    [service("db", "tcp"), mesh_resource("STRICT", "1h")])
    for node in snapshot.workloads:
        compiled = ConfigCompiler().compile(snapshot, proxy(snapshot, node))
        assert consistency.problems(compiled) == []
        assert not compiled.of_type(SDS)
        for cluster in consistency.decoded(compiled, CDS).values():
            assert not cluster.HasField("transport_socket")
            assert max_connection_duration(cluster) is None
        for listener in consistency.decoded(compiled, LDS).values():
            assert not listener.listener_filters
            assert not any(c.HasField("transport_socket") for c in listener.filter_chains)


def test_a_renewal_rebuilds_only_that_proxys_identity_secret(
        build: Build, ca: CertificateAuthority, tmp_path: Path) -> None:
    before = build([workload("books-1"), CLIENT])
    compiler = ConfigCompiler()
    nodes = ["books-1.default", "web-1.default"]
    first = {n: compiler.compile(before.snapshot, proxy(before.snapshot, n)) for n in nodes}
    built = compiler.memo.builds

    renewed, _ = certify(ca, tmp_path, before.snapshot.workloads["books-1.default"])
    identity = replace(before.snapshot.identity, certificates={
        **before.snapshot.identity.certificates, "books-1.default": renewed})
    after = replace(before.snapshot, version=2, identity=identity)
    second = {n: compiler.compile(after, proxy(after, n)) for n in nodes}
    assert compiler.memo.builds == built + 1
    changed = {(n, t, name) for n in nodes for t in second[n].resources
               for name, r in second[n].of_type(t).items()
               if first[n].of_type(t).get(name) is not r}
    assert changed == {("books-1.default", SDS, names.IDENTITY_SECRET)}
