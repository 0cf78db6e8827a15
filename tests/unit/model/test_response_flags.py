"""Envoy's response flags: parsed, explained, and which mean there was no connection."""

from __future__ import annotations

import pytest

from tulle.model import response_flags


@pytest.mark.parametrize(("flags", "parsed", "no_connection"), [
    (None, (), None),
    ("-", (), None),
    ("", (), None),
    ("UH", ("UH",), "UH"),
    ("UF,URX", ("UF", "URX"), "UF"),
    ("URX,UF", ("URX", "UF"), "UF"),
    ("UT", ("UT",), None),
    ("DC", ("DC",), None),
    ("FI", ("FI",), "FI"),
    ("NR", ("NR",), "NR"),
])
def test_parse_and_no_connection(flags: str | None, parsed: tuple[str, ...],
                                 no_connection: str | None) -> None:
    assert response_flags.parse(flags) == parsed
    assert response_flags.no_connection(flags) == no_connection


def test_every_flag_that_means_no_connection_has_a_meaning() -> None:
    assert not response_flags.NO_CONNECTION - set(response_flags.MEANINGS)
    assert response_flags.meaning("UH") == "no healthy upstream"
    assert response_flags.meaning("ZZ") == "response flag ZZ"
