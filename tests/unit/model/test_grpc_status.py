"""gRPC status codes as logs carry them (name in any case, or number) and as views say them."""

from __future__ import annotations

import pytest

from tulle.model import grpc_status

CASES: list[tuple[object, str | None, bool, str]] = [
    ("UNAVAILABLE", "UNAVAILABLE", True, "UNAVAILABLE (14)"),
    ("Unavailable", "UNAVAILABLE", True, "UNAVAILABLE (14)"),  # Envoy's CAMEL_STRING
    ("DeadlineExceeded", "DEADLINE_EXCEEDED", True, "DEADLINE_EXCEEDED (4)"),
    ("14", "UNAVAILABLE", True, "UNAVAILABLE (14)"),
    (8, "RESOURCE_EXHAUSTED", True, "RESOURCE_EXHAUSTED (8)"),
    ("OK", "OK", False, "OK (0)"),
    ("Ok", "OK", False, "OK (0)"),
    (0, "OK", False, "OK (0)"),
    ("42", "42", True, "42"),  # outside the table: as it came, and not OK
    ("-", None, False, "-"),  # not a gRPC call
    ("", None, False, "-"),
    (None, None, False, "-"),
]


@pytest.mark.parametrize(("raw", "name", "failed", "said"), CASES,
                         ids=[repr(c[0]) for c in CASES])
def test_status(raw: object, name: str | None, failed: bool, said: str) -> None:
    assert grpc_status.name_of(raw) == name
    assert grpc_status.failed(raw) is failed
    assert grpc_status.describe(raw) == said


def test_the_table_has_the_17_codes_once_each() -> None:
    assert sorted(grpc_status.CODES.values()) == list(range(17))


@pytest.mark.parametrize(("raw", "text"), [("a%20b%25", "a b%"), ("", None), ("-", None),
                                           (None, None)])
def test_message(raw: object, text: str | None) -> None:
    assert grpc_status.message(raw) == text
