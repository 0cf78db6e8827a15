"""Redaction for bug reports (pure): nothing secret may leave in the archive.

Two passes. Structured data (JSON) first, by structure (``tulle.security.redact``, the same
rules as the agent applies to config dumps): ``private_key`` fields at any depth, fields whose
name mentions a token, every value of gRPC ``initial_metadata``, and the values of secret
headers, whether as a mapping key (``{"authorization": ...}``) or as a key/value pair
(``{"key": "authorization", "value": ...}``, as in Envoy's config). Then every file's text: PEM
private-key blocks, bearer credentials, secret header values in log formats
(``Authorization: x``, Envoy's ``'authorization', 'x'``), and the literal values of known
secrets (the API and metrics tokens).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tulle.model.access_log import ALWAYS_REDACTED
from tulle.security import REDACTED, SECRET_HEADERS, redact

# A bug report also holds debug logs, where a proxy's own credentials may show.
ALWAYS_SECRET_HEADERS = tuple(sorted({*ALWAYS_REDACTED, *SECRET_HEADERS}))
_PEM_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                      re.DOTALL)
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]+")


@dataclass(frozen=True)
class Redactor:
    secrets: tuple[str, ...] = ()  # literal values to remove wherever they appear
    headers: tuple[str, ...] = ALWAYS_SECRET_HEADERS  # lower-case header names

    @classmethod
    def of(cls, secrets: Iterable[str | None], headers: Iterable[str] = ()) -> Redactor:
        # Longest first, so a secret that contains another is removed whole.
        values = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
        names = sorted({*ALWAYS_SECRET_HEADERS, *(h.lower() for h in headers if h)})
        return cls(tuple(values), tuple(names))

    def value(self, data: Any) -> Any:
        """JSON-like ``data`` with secret fields and header values replaced, and every string
        left through :meth:`text`."""
        return redact(data, self.headers, self.text)

    def text(self, text: str) -> str:
        """Free text (a log): everything, secret header values included."""
        if self.headers:
            text = self._header_pattern().sub(lambda m: m.group("lead") + REDACTED, text)
        return self.scrub(text)

    def scrub(self, text: str) -> str:
        """What is secret whatever the format: PEM keys, bearer credentials, known secrets.
        Safe on serialized JSON: it never removes a quote or a backslash."""
        text = _PEM_KEY.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _header_pattern(self) -> re.Pattern[str]:
        names = "|".join(re.escape(h) for h in self.headers)
        # name, an optional closing quote, a separator (: = ,), then the value: quoted up to
        # its closing quote, or bare up to the end of the line.
        return re.compile(
            rf"""(?im)(?P<lead>(?<![\w-])(?P<q1>['"]?)(?:{names})(?P=q1)\s*[:=,]\s*"""
            rf"""(?P<q2>['"]?))(?:(?<=['"])[^'"\r\n]*|(?<!['"])[^\r\n]*)""")
