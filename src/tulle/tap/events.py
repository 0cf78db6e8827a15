"""Tap events: what a sidecar's access-log entry becomes before it reaches a user.

Envoy sends each request as custom tags named after the fields of
``tulle.model.access_log.LOG_FIELD_KINDS``, all strings. Here they get their types back, and
secret headers are redacted once more (Envoy never sends their values; this guards against a
config that would).
"""

from __future__ import annotations

from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.model import grpc_status
from tulle.model.access_log import (
    LITERAL_FIELDS,
    LOG_FIELD_KINDS,
    FieldKind,
    captured_headers,
)
from tulle.security import REDACTED

Event = dict[str, Any]
EVENT_FIELDS: tuple[str, ...] = (*LITERAL_FIELDS, *LOG_FIELD_KINDS)


def decode(node_id: str, entry: accesslog_pb2.HTTPAccessLogEntry,
           redacted: tuple[str, ...]) -> Event:
    """A tap event, with the fields of an access-log line. ``node_id`` is the authenticated
    sender, whatever the entry claims. Envoy leaves out empty tags: absent is None."""
    event: Event = dict.fromkeys(EVENT_FIELDS)
    headers: dict[str, dict[str, str | None]] = {
        group: dict.fromkeys(names) for group, names in captured_headers(redacted).items()}
    for key, value in entry.common_properties.custom_tags.items():
        group, _, header = key.partition(".")
        if header and group in headers:
            headers[group][header] = value
        elif key in LOG_FIELD_KINDS:
            event[key] = typed(value, LOG_FIELD_KINDS[key])
        elif key in LITERAL_FIELDS:
            event[key] = value or None
    event["workload"] = node_id
    # Readable as the application wrote it (an access-log file keeps it percent-encoded).
    event["grpcMessage"] = grpc_status.message(event["grpcMessage"])
    hidden = frozenset(redacted)
    for group, values in headers.items():
        event[group] = redact(values, hidden)
    return event


def typed(value: str, kind: FieldKind) -> Any:
    """A field's value as the access-log file has it: numbers and booleans typed, no value
    (Envoy's "-" or nothing) as None."""
    if value in ("", "-") and kind != "str":
        return None
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            return None
    if kind == "bool":
        return {"true": True, "false": False}.get(value)
    return value or None


def redact(headers: dict[str, str | None], hidden: frozenset[str]) -> dict[str, str | None]:
    return {name: REDACTED if value and name.lower() in hidden else value
            for name, value in sorted(headers.items())}
