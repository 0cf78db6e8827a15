"""Path semantics of the Gateway API, shared by validation and translation."""

from __future__ import annotations

import re


def segment_prefix(value: str) -> str:
    """Gateway API ignores a trailing "/" in a prefix: /books/ matches /books too."""
    return value.rstrip("/") or "/"


def prefix_rewrite(prefix: str, replacement: str) -> tuple[str, str]:
    """(RE2 pattern, substitution) for ReplacePrefixMatch with whole-segment semantics:
    /books/1 with prefix /books and replacement /v2/books becomes /v2/books/1; with
    replacement /, /books becomes / and /books/1 becomes /1."""
    base = re.escape(segment_prefix(prefix))
    target = segment_prefix(replacement).replace("\\", "\\\\")
    if target == "/":
        return f"^{base}/?(.*)$", r"/\1"
    return f"^{base}(/.*)?$", target + r"\1"
