"""Durations as users write them, in seconds: the one parser behind every timeout and interval."""

from __future__ import annotations

import pytest

from tulle.model.durations import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25),
    ("30s", 30.0),
    ("0s", 0.0),
    ("5m", 300.0),  # minutes, not milliseconds
    ("1h30m", 5400.0),
    ("1.5d", 129_600.0),
    ("1h1m1s1ms", 3661.001),  # four parts at most...
    ("0.000001ms", 1e-9),
    ("999999s", 999_999.0),
])
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize("text", [
    "1h1m1s1ms1ms",  # ...not five
    "10",  # a unit is required
    "s",
    "1 s",
    "-1s",
    "1.s",
    "1e3s",
    "1000000s",  # at most six digits a part
    "1w",
    "1S",
    "",
    " 1s",
])
def test_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None
