"""Join tokens: single use, short-lived, and never stored in the clear."""

from __future__ import annotations

import hashlib

import pytest

from tulle.errors import IdentityError
from tulle.identity.tokens import Binding, JoinTokens

BOOKS_ID = "spiffe://example.org/ns/default/sa/books"
TTL = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(clock: Clock) -> JoinTokens:
    return JoinTokens(ttl_s=TTL, clock=clock)


def test_a_token_redeems_once_for_its_binding(tokens: JoinTokens, clock: Clock) -> None:
    token = tokens.issue("books-1.default", BOOKS_ID)
    clock.now += TTL - 1
    assert tokens.redeem(token) == Binding("books-1.default", BOOKS_ID, 1000.0 + TTL)
    with pytest.raises(IdentityError, match="already used") as caught:
        tokens.redeem(token)
    assert caught.value.hint


def test_tokens_are_distinct_and_bound_to_their_own_workload(tokens: JoinTokens) -> None:
    first = tokens.issue("books-1.default", BOOKS_ID)
    second = tokens.issue("books-1.default", BOOKS_ID)
    other = tokens.issue("web-1.shop", "spiffe://example.org/ns/shop/sa/web")
    assert len({first, second, other}) == 3
    assert tokens.redeem(other).node_id == "web-1.shop"
    assert tokens.redeem(first).spiffe_id == BOOKS_ID, "redeeming one leaves the others"
    assert tokens.redeem(second).node_id == "books-1.default"


# Seconds after issue at which the token is redeemed, and whether it still works.
AGES = [(0.0, True), (TTL - 0.001, True), (TTL, False), (TTL + 1, False)]


@pytest.mark.parametrize(("age", "valid"), AGES, ids=[f"{a:g}s" for a, _ in AGES])
def test_a_token_expires_after_its_ttl(tokens: JoinTokens, clock: Clock, age: float,
                                       valid: bool) -> None:
    token = tokens.issue("books-1.default", BOOKS_ID)
    clock.now += age
    if valid:
        assert tokens.redeem(token).spiffe_id == BOOKS_ID
        return
    with pytest.raises(IdentityError, match="expired") as caught:
        tokens.redeem(token)
    assert f"{TTL:g}s" in (caught.value.hint or "")
    with pytest.raises(IdentityError, match="unknown"):
        tokens.redeem(token)  # a failed redemption uses the token up too


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 43])
def test_an_unknown_token_is_refused(tokens: JoinTokens, token: str) -> None:
    tokens.issue("books-1.default", BOOKS_ID)
    with pytest.raises(IdentityError, match="unknown"):
        tokens.redeem(token)


def test_tokens_are_stored_by_hash_only(tokens: JoinTokens) -> None:
    token = tokens.issue("books-1.default", BOOKS_ID)
    stored = vars(tokens)["_pending"]
    assert token not in stored
    assert not any(token in key for key in stored)
    assert list(stored) == [hashlib.sha256(token.encode()).hexdigest()]


def test_issuing_prunes_expired_tokens(tokens: JoinTokens, clock: Clock) -> None:
    stale = tokens.issue("books-1.default", BOOKS_ID)
    clock.now += TTL / 2
    fresh = tokens.issue("books-2.default", BOOKS_ID)
    clock.now += TTL / 2
    tokens.issue("books-3.default", BOOKS_ID)
    stored = vars(tokens)["_pending"]
    assert len(stored) == 2, "the first token expired and was dropped"
    with pytest.raises(IdentityError, match="unknown"):
        tokens.redeem(stale)
    assert tokens.redeem(fresh).node_id == "books-2.default"
