"""The one outlier rule `tulle check` and `tulle diagnose` share."""

from __future__ import annotations

import pytest

from tulle.telemetry.outliers import STATS, OutlierRule, far_above_peers

RULE = OutlierRule(ratio=3.0, margin=100)


@pytest.mark.parametrize(("values", "expected"), [
    ({"a": 10, "b": 12, "c": 500}, ["c"]),          # far above both ratio and margin
    ({"a": 10, "b": 12, "c": 100}, []),             # 10x, but within the margin
    ({"a": 1000, "b": 1200, "c": 2500}, []),        # 2.3x: everyone is large
    ({"a": 10, "c": 500}, []),                      # one peer is not a median
    ({"a": 10, "b": 12, "c": 500, "d": 600, "e": 550}, []),  # big ones are each other's peers
    ({}, []),
])
def test_far_above_peers(values: dict[str, int], expected: list[str]) -> None:
    assert [o.node for o in far_above_peers(values, RULE)] == expected


def test_the_outlier_carries_its_peers_median() -> None:
    (found,) = far_above_peers({"web-1": 4500, "books-1": 1100, "api-1": 1200}, STATS)
    assert (found.node, found.value, found.median, found.peers) == ("web-1", 4500, 1150, 2)
