"""gRPC status codes: a call's outcome, which arrives in ``grpc-status`` (a trailer, or a header
of a trailers-only answer) while its HTTP status stays 200.

Sidecars log the code by name (``%GRPC_STATUS(SNAKE_STRING)%``: "UNAVAILABLE"); the views that
show calls (tap, top, diagnose) say it with its number, as gRPC's own documentation does:
"UNAVAILABLE (14)". Every code but OK is a failure, as Envoy's grpc_stats filter counts them.
"""

from __future__ import annotations

from urllib.parse import unquote

# The codes of https://grpc.github.io/grpc/core/md_doc_statuscodes.html, by number.
CODES: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
NAMES: dict[int, str] = {number: name for name, number in CODES.items()}


def name_of(status: object) -> str | None:
    """The code's name from what a log carries: a name in any case ("UNAVAILABLE",
    "Unavailable"), a number ("14", 14); None when there is none ("-", "", None)."""
    if isinstance(status, int) and not isinstance(status, bool):
        return NAMES.get(status, str(status))
    text = str(status or "").strip()
    if text in ("", "-"):
        return None
    if text.isdigit():
        return NAMES.get(int(text), text)
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(text)) \
        if not text.isupper() else text
    return snake.upper()


def failed(status: object) -> bool:
    """Whether the call failed by its gRPC status (no status: not a gRPC answer, not failed)."""
    name = name_of(status)
    return name is not None and name != "OK"


def describe(status: object) -> str:
    """ "UNAVAILABLE (14)"; a code outside the table as it came."""
    name = name_of(status)
    if name is None:
        return "-"
    number = CODES.get(name)
    return name if number is None else f"{name} ({number})"


def message(raw: object) -> str | None:
    """``grpc-message`` as the application wrote it: on the wire it is percent-encoded."""
    text = str(raw or "")
    return unquote(text) if text and text != "-" else None
