"""Bearer tokens: how they are made and compared. Stdlib only, so the agent can use it."""

from __future__ import annotations

import hmac
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str, presented: str) -> bool:
    """Constant-time comparison; an empty expected token never matches. Never raises: a
    header that was not UTF-8 reaches us with lone surrogates (aiohttp decodes with
    ``surrogateescape``), and is only a wrong token."""
    return bool(expected) and hmac.compare_digest(expected.encode("utf-8", "surrogatepass"),
                                                  presented.encode("utf-8", "surrogatepass"))


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header value, or ""."""
    if header and header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return ""
