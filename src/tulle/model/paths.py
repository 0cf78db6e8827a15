"""Path semantics of the Gateway API, shared by validation and translation."""

from __future__ import annotations

import re

from tulle.model.httproute import RouteMatch


def segment_prefix(value: str) -> str:
    """Gateway API ignores a trailing "/" in a prefix: /books/ matches /books too."""
    return value.rstrip("/") or "/"


def prefix_rewrite(prefix: str, replacement: str) -> tuple[str, str]:
    """(RE2 pattern, substitution) for ReplacePrefixMatch with whole-segment semantics:
    /books/1 with prefix /books and replacement /v2/books becomes /v2/books/1; with
    replacement /, /books becomes / and /books/1 becomes /1."""
    base = re.escape(segment_prefix(prefix))
    target = segment_prefix(replacement).replace("\\", "\\\\")
    if base == "/":
        # The catch-all prefix: every path starts with it. "/" becomes the replacement,
        # "/books" becomes replacement + "/books".
        return ("^(.*)$", r"\1") if target == "/" else ("^(?:/|(/.+))$", target + r"\1")
    if target == "/":
        return f"^{base}/?(.*)$", r"/\1"
    return f"^{base}(/.*)?$", target + r"\1"


def match_precedence(match: RouteMatch) -> tuple[int, int, int, int, int]:
    """Gateway API order: exact paths, then the longest prefix, then a method, then the most
    header matches, then the most query matches. Lower sorts first. The Gateway API leaves
    regular expressions to implementations: tulle ranks them with prefixes, by length, so that
    a catch-all prefix "/" never hides them."""
    path = match.path
    kind = 0 if path.type == "Exact" else 1
    length = len(path.value if path.type != "PathPrefix" else segment_prefix(path.value))
    return (kind, -length, 0 if match.method else 1, -len(match.headers),
            -len(match.query_params))
