"""SPIFFE IDs: how they are written, read back, and which trust domains are valid."""

from __future__ import annotations

import pytest

from tulle.identity.spiffe import (
    CONTROL_PLANE_ACCOUNT,
    SYSTEM_NAMESPACE,
    control_plane_id,
    parse,
    spiffe_id,
    trust_domain_problem,
)

IDS = [
    (("example.org", "default", "books"), "spiffe://example.org/ns/default/sa/books"),
    (("cluster.local", "shop", "books-v2"), "spiffe://cluster.local/ns/shop/sa/books-v2"),
    (("td_1-x", "a", "b"), "spiffe://td_1-x/ns/a/sa/b"),
]


@pytest.mark.parametrize(("parts", "uri"), IDS, ids=[i[1] for i in IDS])
def test_ids_are_written_and_read_back(parts: tuple[str, str, str], uri: str) -> None:
    assert spiffe_id(*parts) == uri
    assert parse(uri) == parts


NOT_WORKLOAD_IDS = [
    "",
    "spiffe://example.org",
    "spiffe://example.org/",
    "spiffe://example.org/ns/default",
    "spiffe://example.org/ns/default/sa/",
    "spiffe://example.org/ns//sa/books",
    "spiffe://example.org/ns/default/sa/books/",
    "spiffe://example.org/ns/default/sa/books/extra",
    "spiffe://example.org/ns/default/sa/books?x=1",
    "spiffe://example.org/ns/default/sa/books\n",
    "spiffe://Example.org/ns/default/sa/books",
    "spiffe://example.org/ns/Default/sa/books",
    "spiffe://example.org/sa/books/ns/default",
    "https://example.org/ns/default/sa/books",
    "SPIFFE://example.org/ns/default/sa/books",
    " spiffe://example.org/ns/default/sa/books",
]


@pytest.mark.parametrize("uri", NOT_WORKLOAD_IDS)
def test_other_uris_are_not_workload_ids(uri: str) -> None:
    assert parse(uri) is None


VALID_DOMAINS = ["example.org", "cluster.local", "a", "tulle_mesh-1", "x" * 255, "1.2.3"]
INVALID_DOMAINS = ["", "Example.org", "a/b", "a b", "spiffe://example.org", "x" * 256,
                   "exämple.org", "example.org\n", "example.org:8443", "user@example.org"]


@pytest.mark.parametrize("value", VALID_DOMAINS)
def test_valid_trust_domains(value: str) -> None:
    assert trust_domain_problem(value) is None


@pytest.mark.parametrize("value", INVALID_DOMAINS)
def test_invalid_trust_domains_are_explained(value: str) -> None:
    problem = trust_domain_problem(value)
    assert problem is not None
    assert "not a valid trust domain" in problem and "lower-case" in problem


def test_the_control_plane_has_an_id_of_its_own() -> None:
    uri = control_plane_id("example.org")
    assert parse(uri) == ("example.org", SYSTEM_NAMESPACE, CONTROL_PLANE_ACCOUNT)
    assert uri != spiffe_id("example.org", "default", "tulle-controlplane")
