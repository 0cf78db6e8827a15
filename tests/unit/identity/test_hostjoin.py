"""Host join tokens: single use, scoped, expiring, revocable; the secret is never stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tulle.errors import IdentityError, UsageError
from tulle.identity.cafiles import DirectoryFiles
from tulle.identity.hostjoin import JoinGrants, split_token


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def grants(tmp_path: Path) -> tuple[JoinGrants, Clock, Path]:
    clock = Clock()
    return JoinGrants(DirectoryFiles(tmp_path / "joins"), clock), clock, tmp_path / "joins"


def test_a_token_works_once_for_its_service(grants: tuple[JoinGrants, Clock, Path]) -> None:
    joins, _, _ = grants
    token, grant = joins.create("books", "default", 600)
    used = joins.redeem(token, "books", "default", "books-7.default")
    assert used.id == grant.id and used.used_by == "books-7.default"
    with pytest.raises(IdentityError, match=r"already used \(by books-7\.default\)"):
        joins.redeem(token, "books", "default", "books-8.default")
    assert [g.state(0) for g in joins.all()] == ["used"]


@pytest.mark.parametrize(("service", "namespace"), [("web", "default"), ("books", "shop")])
def test_a_token_for_another_service_is_refused_and_not_spent(
        grants: tuple[JoinGrants, Clock, Path], service: str, namespace: str) -> None:
    joins, _, _ = grants
    token, _ = joins.create("books", "default")
    with pytest.raises(IdentityError, match="is for service books in namespace default") as err:
        joins.redeem(token, service, namespace, f"{service}-1.{namespace}")
    assert "--service books" in (err.value.hint or "")
    joins.redeem(token, "books", "default", "books-1.default")  # still good for books


def test_an_expired_token_is_refused(grants: tuple[JoinGrants, Clock, Path]) -> None:
    joins, clock, _ = grants
    token, _ = joins.create("books", "default", 60)
    clock.now += 61
    with pytest.raises(IdentityError, match="expired 1s ago"):
        joins.redeem(token, "books", "default", "books-1.default")
    assert joins.all()[0].state(clock.now) == "expired"


def test_a_revoked_token_is_refused(grants: tuple[JoinGrants, Clock, Path]) -> None:
    joins, _, _ = grants
    token, grant = joins.create("books", "default")
    assert joins.revoke(grant.id).revoked_at is not None
    with pytest.raises(IdentityError, match="revoked"):
        joins.redeem(token, "books", "default", "books-1.default")
    with pytest.raises(UsageError, match="no join token has the id"):
        joins.revoke("0123456789ab")


@pytest.mark.parametrize("forged", [
    "tj1.{id}.not-the-secret", "tj1.0123456789ab.{secret}", "{id}.{secret}", "tj1..x", "",
    "tj1.../../etc.x"])
def test_forged_tokens_are_refused(grants: tuple[JoinGrants, Clock, Path], forged: str) -> None:
    joins, _, _ = grants
    token, _ = joins.create("books", "default")
    _, ident, secret = token.split(".")
    with pytest.raises(IdentityError):
        joins.redeem(forged.format(id=ident, secret=secret), "books", "default", "b-1.default")
    joins.redeem(token, "books", "default", "books-1.default")  # the real one still works


def test_only_a_digest_is_stored_and_files_are_private(
        grants: tuple[JoinGrants, Clock, Path]) -> None:
    joins, _, directory = grants
    token, grant = joins.create("books", "default")
    _, secret = split_token(token)
    for path in directory.iterdir():
        assert secret not in path.read_text()
        assert path.stat().st_mode & 0o077 == 0
    assert "digest" not in grant.to_json(0) and grant.to_json(0)["state"] == "valid"


@pytest.mark.parametrize("ttl", [0, -5, 8 * 86400])
def test_lifetimes_out_of_range_are_refused(grants: tuple[JoinGrants, Clock, Path],
                                            ttl: float) -> None:
    with pytest.raises(UsageError, match="lifetime"):
        grants[0].create("books", "default", ttl)
