"""When a sidecar's memory or stats count is far above its peers': one rule for `tulle check`
and `tulle diagnose`, so both flag the same sidecars. Standard library only.

A sidecar is an outlier when its value is both ``ratio`` times the median of the *other*
sidecars and ``margin`` above it: the ratio ignores meshes where everyone is large, the margin
ignores small absolute differences in an idle mesh. At least two peers are needed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OutlierRule:
    ratio: float
    margin: int


MEMORY = OutlierRule(2.0, 32 << 20)  # twice the peers' median, and 32 MiB above it
STATS = OutlierRule(3.0, 2000)  # three times the peers' median, and 2,000 stats above it


@dataclass(frozen=True)
class Outlier:
    node: str
    value: int
    median: float  # of its peers
    peers: int


def far_above_peers(values: Mapping[str, int], rule: OutlierRule) -> Iterator[Outlier]:
    """The nodes (in name order) whose value is far above the median of the others."""
    for node, value in sorted(values.items()):
        peers = [v for n, v in values.items() if n != node]
        if len(peers) < 2:
            continue
        median = statistics.median(peers)
        if value > rule.ratio * median and value - median > rule.margin:
            yield Outlier(node, value, median, len(peers))
