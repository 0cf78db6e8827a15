"""identity-join-tokens: hosts that were invited and did not join."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.checks.controlplane import evaluate_join_tokens

NOW = 1_800_000_000.0


def token(ident: str, state: str, expires_in: float, used: bool = False) -> dict[str, Any]:
    return {"id": ident, "service": "books", "namespace": "default", "state": state,
            "expiresAt": NOW + expires_in, "usedAt": NOW - 60 if used else None}


# (case, tokens, passes, words the message must hold)
CASES = [
    ("none made", [], True, ["no join tokens"]),
    ("all used or far from expiry",
     [token("a", "used", -3600, used=True), token("b", "valid", 3600)], True, ["1 valid"]),
    ("expired unused an hour ago", [token("c", "expired", -3600)], False,
     ["c", "books.default", "expired unused 60m ago", "never joined"]),
    ("expired unused two days ago: old news", [token("d", "expired", -2 * 86400)], True, []),
    ("used, then expired", [token("e", "expired", -600, used=True)], True, []),
    ("revoked by the operator", [token("f", "revoked", 3600)], True, []),
    ("unused, expiring in 5 minutes", [token("g", "valid", 300)], False,
     ["g", "expires in 5m", "unused"]),
]


@pytest.mark.parametrize(("tokens", "passes", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_join_tokens(tokens: list[dict[str, Any]], passes: bool, words: list[str]) -> None:
    outcome = evaluate_join_tokens(tokens, NOW)
    assert (outcome.status == "ok") == passes, outcome
    for word in words:
        assert word in outcome.message, outcome.message
