"""Join tokens for other hosts: how an operator lets one workload on another machine in.

``tulle token create --service S`` makes a token that lets one agent register one instance of
service S (in one namespace), once, before it expires, unless it is revoked first. The agent
also pins the CA by its fingerprint, so it trusts the control plane it reaches before it
shows the token (kubeadm's model).

A token reads ``tj1.<id>.<secret>``. Only the id and a digest of the whole token are kept, in
files every control-plane replica shares (``tulle.identity.cafiles.CaFiles``): the id names
the token in ``token list`` and ``token revoke``; the secret is never stored. Redeeming
creates a ``<id>.used`` file, which exists at most once whichever replica is asked, so a token
works exactly once across replicas.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tulle.errors import IdentityError, UsageError
from tulle.humanize import format_duration
from tulle.identity.cafiles import CaFiles

PREFIX = "tj1"
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 7 * 24 * 3600.0
_ID = re.compile(r"^[0-9a-f]{12}$")


class JoinRefused(IdentityError):
    """A presented join token was refused; ``reason`` is a short word for counting."""

    def __init__(self, reason: str, message: str, *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class ListedFiles(CaFiles, Protocol):
    def names(self) -> list[str]:
        """Every file's name."""


@dataclass(frozen=True)
class JoinGrant:
    """What one token allows: one instance of ``service`` in ``namespace``."""

    id: str
    service: str
    namespace: str
    created_at: float
    expires_at: float
    digest: str
    revoked_at: float | None = None
    used_at: float | None = None
    used_by: str = ""  # the node that redeemed it

    def state(self, now: float) -> str:
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "valid"

    def to_json(self, now: float) -> dict[str, Any]:
        """The public view: never the digest."""
        return {"id": self.id, "service": self.service, "namespace": self.namespace,
                "createdAt": self.created_at, "expiresAt": self.expires_at,
                "revokedAt": self.revoked_at, "usedAt": self.used_at, "usedBy": self.used_by,
                "state": self.state(now)}

    def _record(self) -> bytes:
        return json.dumps({"id": self.id, "service": self.service, "namespace": self.namespace,
                           "createdAt": self.created_at, "expiresAt": self.expires_at,
                           "digest": self.digest, "revokedAt": self.revoked_at}).encode()

    @classmethod
    def _from_record(cls, data: bytes, used: bytes | None) -> JoinGrant:
        record = json.loads(data)
        use = json.loads(used) if used else {}
        return cls(str(record["id"]), str(record["service"]), str(record["namespace"]),
                   float(record["createdAt"]), float(record["expiresAt"]),
                   str(record["digest"]),
                   float(record["revokedAt"]) if record.get("revokedAt") is not None else None,
                   float(use["at"]) if use else None, str(use.get("node", "")))


def split_token(token: str) -> tuple[str, str]:
    """The id and secret of ``token``; a malformed token is refused without a lookup."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not _ID.match(parts[1]) or not parts[2]:
        raise JoinRefused("malformed", "the join token is malformed",
                          hint="copy the whole token `tulle token create` printed "
                               f"({PREFIX}.<id>.<secret>)")
    return parts[1], parts[2]


def _digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


class JoinGrants:
    """Issue, list, revoke and redeem host join tokens."""

    def __init__(self, files: ListedFiles, clock: Callable[[], float] = time.time) -> None:
        self._files = files
        self._clock = clock

    def create(self, service: str, namespace: str, ttl_s: float = DEFAULT_TTL_S
               ) -> tuple[str, JoinGrant]:
        if not 0 < ttl_s <= MAX_TTL_S:
            raise UsageError(f"a join token's lifetime must be between 1s and "
                             f"{MAX_TTL_S / 86400:g} days, not {ttl_s:g}s",
                             hint="pass --ttl 1h (the default), 15m, 2d ...")
        ident = secrets.token_hex(6)
        token = f"{PREFIX}.{ident}.{secrets.token_urlsafe(32)}"
        now = self._clock()
        grant = JoinGrant(ident, service, namespace, now, now + ttl_s, _digest(token))
        if not self._files.create(ident, grant._record()):  # 48 random bits: never, but
            raise IdentityError("a join token with that id exists already",
                                hint="run the command again")
        return token, grant

    def get(self, ident: str) -> JoinGrant | None:
        if not _ID.match(ident):
            return None
        data = self._files.read(ident)
        return JoinGrant._from_record(data, self._files.read(f"{ident}.used")) if data else None

    def all(self) -> list[JoinGrant]:
        names = [n for n in self._files.names() if _ID.match(n)]
        found = (self.get(n) for n in names)
        return sorted((g for g in found if g is not None), key=lambda g: g.created_at)

    def revoke(self, ident: str) -> JoinGrant:
        grant = self.get(ident)
        if grant is None:
            raise UsageError(f"no join token has the id {ident!r}",
                             hint="list them with `tulle token list`")
        if grant.revoked_at is None and grant.used_at is None:
            grant = JoinGrant(grant.id, grant.service, grant.namespace, grant.created_at,
                              grant.expires_at, grant.digest, revoked_at=self._clock())
            self._files.write(grant.id, grant._record())
        return grant

    def check(self, token: str) -> JoinGrant:
        """The grant of ``token`` if it could be redeemed now (for its own scope), without
        spending it: who asks is judged before their request is read."""
        ident, _ = split_token(token)
        grant = self.get(ident)
        if grant is None or not hmac.compare_digest(grant.digest, _digest(token)):
            raise JoinRefused("unknown", "the join token is not one this mesh issued",
                              hint="make one on the control plane's host: "
                                   "`tulle token create --service NAME`")
        now = self._clock()
        if grant.used_at is not None:
            raise JoinRefused("replayed", f"the join token {ident} was already used (by "
                              f"{grant.used_by or 'another agent'})",
                              hint="a join token works once: make a new one with "
                                   f"`tulle token create --service {grant.service}`")
        if grant.revoked_at is not None:
            raise JoinRefused("revoked", f"the join token {ident} was revoked",
                              hint="make a new one with `tulle token create --service "
                                   f"{grant.service}`")
        if grant.expires_at <= now:
            raise JoinRefused("expired", f"the join token {ident} expired "
                              f"{format_duration(now - grant.expires_at)} ago",
                              hint="make a new one with `tulle token create --service "
                                   f"{grant.service}` (--ttl sets how long it lasts)")
        return grant

    def redeem(self, token: str, service: str, namespace: str, node: str) -> JoinGrant:
        """Spend ``token`` for one instance of ``service`` in ``namespace``. Every failure
        says why, and none of them spends the token except a successful redemption."""
        grant = self.check(token)
        ident, now = grant.id, self._clock()
        if (grant.service, grant.namespace) != (service, namespace):
            raise JoinRefused("wrong-service",
                              f"the join token {ident} is for service {grant.service} in "
                              f"namespace {grant.namespace}, not {service} in {namespace}",
                              hint=f"run the agent with --service {grant.service} "
                                   f"--namespace {grant.namespace}, or make a token for "
                                   f"{service}")
        used = json.dumps({"at": now, "node": node}).encode()
        if not self._files.create(f"{ident}.used", used):
            raise JoinRefused("replayed", f"the join token {ident} was already used",
                              hint="a join token works once: make a new one with "
                                   f"`tulle token create --service {grant.service}`")
        return JoinGrant(grant.id, grant.service, grant.namespace, grant.created_at,
                         grant.expires_at, grant.digest, None, now, node)



def listed(grants: Iterable[JoinGrant], now: float) -> list[dict[str, Any]]:
    return [g.to_json(now) for g in grants]
