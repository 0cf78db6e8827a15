"""Pre-serialized xDS resources and responses.

Serializing protobufs inside the event loop stalls every stream, so each resource is encoded
once, when generated, and shared by every proxy that receives it. Responses are assembled from
those bytes; only the per-stream nonce is appended at send time. Protobuf allows fields in any
order, so appending field 5 (nonce) to a pre-built body gives a valid message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_LEN = 2  # wire type of length-delimited fields


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def content_version(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class EncodedResource:
    """One xDS resource, serialized once and versioned by a hash of its content."""

    type_url: str
    name: str
    version: str
    sotw_entry: bytes  # DiscoveryResponse.resources[] entry: field 2 holding the Any
    delta_entry: bytes  # DeltaDiscoveryResponse.resources[] entry: field 2 holding a Resource
    member_hash: int  # its part in the version of a set that holds it (``set_version``)


def same_versions(a: Mapping[str, EncodedResource], b: Mapping[str, EncodedResource]) -> bool:
    """Whether two sets hold the same resources at the same versions (what comparing their
    set versions tells, without sorting and hashing both)."""
    if len(a) != len(b):
        return False
    for name, r in a.items():
        held = b.get(name)
        if held is not r and (held is None or held.version != r.version):
            return False
    return True


def encode(type_url: str, name: str, message: Any) -> EncodedResource:
    value = message.SerializeToString(deterministic=True)
    any_bytes = field(1, type_url.encode()) + field(2, value)
    version = content_version(value)
    # envoy.service.discovery.v3.Resource: version = 1, resource = 2, name = 3
    resource = field(1, version.encode()) + field(2, any_bytes) + field(3, name.encode())
    return EncodedResource(type_url, name, version, field(2, any_bytes), field(2, resource),
                           member_hash(name, version))


_SET_BITS = 128
_SET_MASK = (1 << _SET_BITS) - 1


def member_hash(name: str, version: str) -> int:
    """One (name, version) pair's part in the version of a set."""
    digest = hashlib.blake2b(f"{name}\0{version}".encode(), digest_size=_SET_BITS // 8)
    return int.from_bytes(digest.digest(), "little")


def version_of_sum(total: int) -> str:
    """The version of a set whose members' hashes add up to ``total``."""
    return f"{total & _SET_MASK:032x}"


def set_version(versions: Iterable[tuple[str, str]]) -> str:
    """A version for a set of (name, version) pairs: it changes when any member changes, or
    the membership does. It is the sum of the members' hashes (mod 2**128), so it composes:
    a push adds and subtracts the hashes of what changed (``SetSum``) instead of sorting and
    hashing every name of the set, per proxy."""
    return version_of_sum(sum(member_hash(name, version) for name, version in versions))


def versions_of(resources: Iterable[EncodedResource]) -> list[tuple[str, str]]:
    return [(r.name, r.version) for r in resources]


def sum_of(resources: Iterable[EncodedResource]) -> int:
    """The running sum ``set_version`` reads, of encoded resources (their hashes are cached)."""
    return sum(r.member_hash for r in resources)


def sotw_parts(type_url: str, version: str, resources: Iterable[EncodedResource]
               ) -> list[bytes]:
    """A DiscoveryResponse without its nonce, in parts: version_info = 1, resources = 2,
    type_url = 4."""
    parts = [field(1, version.encode())]
    parts.extend(r.sotw_entry for r in resources)
    parts.append(field(4, type_url.encode()))
    return parts


def sotw_body(type_url: str, version: str, resources: Iterable[EncodedResource]) -> bytes:
    return b"".join(sotw_parts(type_url, version, resources))


def delta_parts(type_url: str, system_version: str, resources: Iterable[EncodedResource],
                removed: Iterable[str]) -> list[bytes]:
    """A DeltaDiscoveryResponse without its nonce, in parts: system_version_info = 1,
    resources = 2, type_url = 4, removed_resources = 6."""
    parts = [field(1, system_version.encode())]
    parts.extend(r.delta_entry for r in resources)
    parts.append(field(4, type_url.encode()))
    parts.extend(field(6, name.encode()) for name in removed)
    return parts


def with_nonce(body: bytes, nonce: str) -> bytes:
    """Field 5 is the nonce in both DiscoveryResponse and DeltaDiscoveryResponse."""
    return body + field(5, nonce.encode())


def joined_with_nonce(parts: list[bytes], nonce: str) -> bytes:
    """``with_nonce(b"".join(parts), nonce)`` in one copy of the response, not two (a first
    config is about a MiB per proxy)."""
    parts.append(field(5, nonce.encode()))
    return b"".join(parts)
