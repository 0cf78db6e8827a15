"""Bearer tokens: how they are made and compared; and redaction, how secrets are kept out of
what tulle shows (config dumps, bug reports). Stdlib only, so the agent can use it."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Collection
from typing import Any

REDACTED = "[redacted]"  # what a redacted value shows, wherever tulle shows one (Envoy's too)
# Headers whose values are credentials, wherever they appear: logs, gRPC metadata, dumps.
SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization", "set-cookie")
# Field names whose whole value is secret: private_key, privateKey, token, agentToken,
# xds_token, password... (not "secret": Envoy wraps certificates in one).
_SECRET_FIELD = re.compile(r"(?i)(private_?key|token|password)$")
# A gRPC service's call metadata: how Envoy authenticates a stream (ADS, the tap's access-log
# service). Envoy redacts only the fields its protos mark sensitive, and these are not.
_METADATA_FIELDS = frozenset({"initial_metadata", "initialMetadata"})
# The value fields of a header as Envoy's config spells it ({"key": K, "value": V}).
_HEADER_VALUE_FIELDS = frozenset({"value", "values", "raw_value", "rawValue"})


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


def redact(data: Any, headers: Collection[str] = SECRET_HEADERS,
           text: Callable[[str], str] | None = None) -> Any:
    """A copy of JSON-like ``data`` with every secret value replaced by :data:`REDACTED`,
    found by where it sits, whatever it looks like:

    - a field whose name says it is secret (``private_key``, ``...token``, ``password``); of
      an Envoy data source there, only a ``filename`` stays;
    - every value of a gRPC service's ``initial_metadata`` (the xDS credential, the tap's
      access-log token), whatever the metadata's name;
    - the value of a secret header (``headers``, lower case), as a mapping key
      (``{"authorization": ...}``) or as a key/value pair (``{"key": "authorization",
      "value": ...}``, as in Envoy's config).

    ``text``, when given, is applied to every string left (free text, such as a log line).
    """
    if isinstance(data, dict):
        name = data.get("key", data.get("name"))
        pair = isinstance(name, str) and name.lower() in headers
        out: dict[str, Any] = {}
        for key, item in data.items():
            field = str(key)
            if _SECRET_FIELD.search(field):
                out[key] = _secret_value(item)
            elif field.lower() in headers or (pair and field in _HEADER_VALUE_FIELDS):
                out[key] = REDACTED
            elif field in _METADATA_FIELDS and isinstance(item, list):
                out[key] = [_metadata_entry(entry) for entry in item]
            else:
                out[key] = redact(item, headers, text)
        return out
    if isinstance(data, list):
        return [redact(item, headers, text) for item in data]
    if isinstance(data, str) and text is not None:
        return text(data)
    return data


def _secret_value(item: Any) -> Any:
    """A secret field's value. Envoy's data sources say where a secret is as well as hold it
    (``{"filename": PATH}`` or ``{"inline_bytes": ...}``): where it is stays (a path is what an
    operator debugging a NACK needs), what it holds goes."""
    if isinstance(item, dict):
        return {k: v if k == "filename" and isinstance(v, str) else REDACTED
                for k, v in item.items()}
    return REDACTED


def _metadata_entry(entry: Any) -> Any:
    """One ``{"key": K, "value": V}`` of call metadata: the name stays, the value goes."""
    if isinstance(entry, dict):
        return {k: v if k == "key" else REDACTED for k, v in entry.items()}
    return REDACTED
