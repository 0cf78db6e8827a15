"""Tap filters: --path, --method, --status and --max, parsed at the API and applied per event."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.errors import UsageError
from tulle.tap.filters import TapFilter, parse_filter


def event(path: str = "/", method: str = "GET", status: int | None = 200,
          grpc: str | None = None) -> dict[str, Any]:
    return {"path": path, "method": method, "status": status, "grpcStatus": grpc}


# (case, parse_filter arguments, events that pass, events that do not)
CASES: list[tuple[str, dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("nothing: everything", {}, [event(), event("/x", "POST", 503), event(status=None)], []),
    ("path: whole segments, query ignored", {"path": "/books"},
     [event("/books"), event("/books/1"), event("/books?page=2"), event("/books/1?x=/y")],
     [event("/booksx"), event("/"), event("/shelf/books")]),
    ("path: a trailing / is ignored", {"path": "/books/"}, [event("/books")], [event("/b")]),
    ("path: / is everything", {"path": "/"}, [event("/"), event("/a/b")], []),
    ("method, any case", {"method": "post"}, [event(method="POST")], [event(method="GET")]),
    ("status class", {"status": "5xx"}, [event(status=500), event(status=599)],
     [event(status=499), event(status=200), event(status=None)]),
    ("5xx: gRPC failures inside HTTP 200 too, as stat counts them", {"status": "5xx"},
     [event(grpc="UNAVAILABLE"), event(grpc="INTERNAL"), event(status=503, grpc="UNAVAILABLE")],
     [event(grpc="OK"), event(status=None, grpc=None)]),
    ("a code is the HTTP code only", {"status": "503"}, [event(status=503)],
     [event(grpc="UNAVAILABLE")]),
    ("2xx still has a gRPC failure's HTTP 200", {"status": "2xx"}, [event(grpc="UNAVAILABLE")],
     [event(status=503, grpc="UNAVAILABLE")]),
    ("status code", {"status": "503"}, [event(status=503)], [event(status=500)]),
    ("status list", {"status": "4xx, 503"}, [event(status=404), event(status=503)],
     [event(status=500), event(status=200)]),
    ("all at once", {"path": "/api", "method": "DELETE", "status": "2xx"},
     [event("/api/1", "DELETE", 204)],
     [event("/api/1", "GET", 204), event("/other", "DELETE", 204),
      event("/api/1", "DELETE", 500)]),
]


@pytest.mark.parametrize(("arguments", "passing", "failing"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_filters_match(arguments: dict[str, str], passing: list[dict[str, Any]],
                       failing: list[dict[str, Any]]) -> None:
    tap_filter = parse_filter(**arguments)
    assert all(tap_filter.matches(e) for e in passing)
    assert not any(tap_filter.matches(e) for e in failing)


BAD: list[tuple[str, dict[str, str], str]] = [
    ("path without /", {"path": "books"}, "is not a path prefix"),
    ("path with a query", {"path": "/books?x=1"}, "is not a path prefix"),
    ("method", {"method": "GET /"}, "is not an HTTP method"),
    ("status 6xx", {"status": "6xx"}, "is not a status or class"),
    ("status word", {"status": "errors"}, "is not a status or class"),
    ("status 5x", {"status": "5x"}, "is not a status or class"),
    ("max 0", {"max_events": "0"}, "is not a count"),
    ("max word", {"max_events": "ten"}, "is not a count"),
]


@pytest.mark.parametrize(("arguments", "message"), [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_filters_say_what_to_write(arguments: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_filter(**arguments)
    assert caught.value.hint


def test_max_is_a_count() -> None:
    assert parse_filter(max_events="3") == TapFilter(max_events=3)
    assert parse_filter(max_events="") == TapFilter()
