"""Join tokens: how a new workload proves, once, which identity it may ask a certificate for.

A token is issued when a workload registers, is bound to that workload's node and SPIFFE ID,
expires after a short time, and can be redeemed exactly once. After that, the workload proves
itself with the certificate it got.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from tulle.errors import IdentityError
from tulle.security import new_token

DEFAULT_TTL_S = 300.0


@dataclass(frozen=True)
class Binding:
    node_id: str
    spiffe_id: str
    expires_at: float


class JoinTokens:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._pending: dict[str, Binding] = {}  # keyed by the token's hash, not the token

    def issue(self, node_id: str, spiffe_id: str) -> str:
        self._prune()
        token = new_token()
        self._pending[_digest(token)] = Binding(node_id, spiffe_id, self._clock() + self.ttl_s)
        return token

    def redeem(self, token: str) -> Binding:
        """The binding of ``token``, which is used up whatever happens next."""
        binding = self._pending.pop(_digest(token), None)
        if binding is None:
            raise IdentityError("the join token is unknown or was already used",
                                hint="a join token works once; restart the workload to get a "
                                     "new one")
        if binding.expires_at <= self._clock():
            raise IdentityError("the join token has expired",
                                hint=f"join tokens last {self.ttl_s:g}s; restart the workload "
                                     "to get a new one")
        return binding

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, b in self._pending.items() if b.expires_at <= now]:
            del self._pending[key]


def _digest(token: str) -> str:
    # A header that was not UTF-8 arrives with lone surrogates: an unknown token, not a crash.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
