"""Durations as users write them, in seconds: the one parser behind every timeout and interval."""

from __future__ import annotations

import pytest

from tulle.model.durations import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("1.5ms", 0.0015),
    ("5m", 300.0),  # minutes, not milliseconds
    ("1h1m1s1ms", 3661.001),  # four parts at most...
])
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize("text", [
    "1h1m1s1ms1ms",  # ...not five
    "10",  # a unit is required
    "1000000s",  # at most six digits a part
], ids=["five parts", "no unit", "seven digits"])
def test_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None
