"""Telemetry as analyzers read it: one window of every sidecar's series, and who each sidecar
is. In the control plane it comes from the telemetry windows; tests build it by hand."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tulle.model.meta import ServiceRef
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import (
    INBOUND,
    INBOUND_PLAINTEXT,
    OUTBOUND,
    REQUEST_FIELDS,
    ROUTE,
    SeriesKey,
)
from tulle.telemetry.windows import Window


@dataclass(frozen=True)
class Traffic:
    window: Window
    nodes: Mapping[str, NodeInfo]  # node id -> who the sidecar is

    @property
    def seconds(self) -> float:
        """What rates divide by: the time the summed slots cover."""
        return self.window.span or self.window.seconds

    def describe_window(self) -> str:
        seconds = self.window.seconds
        return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"

    def service_of(self, node: str) -> ServiceRef | None:
        info = self.nodes.get(node)
        return ServiceRef(info.namespace, info.service) if info else None

    def inbound(self, kinds: tuple[str, ...] = (INBOUND, INBOUND_PLAINTEXT)
                ) -> Iterator[tuple[str, ServiceRef, Mapping[str, int]]]:
        """(node, its service, counters) of each sidecar's inbound series of these kinds."""
        for (node, key), values in sorted(self.window.counters.items()):
            ref = self.service_of(node)
            if key.kind in kinds and ref is not None:
                yield node, ref, values

    def outbound(self) -> Iterator[tuple[str, ServiceRef, Mapping[str, int]]]:
        """(caller node, called service, counters) of each caller's calls to a service."""
        for (node, key), values in sorted(self.window.counters.items()):
            if key.kind == OUTBOUND:
                yield node, _service(key.destination), values

    def outbound_gauges(self, node: str, service: ServiceRef) -> Mapping[str, int]:
        return self.window.gauges.get((node, SeriesKey(OUTBOUND, service.host)), {})

    def route_rule(self, node: str, service: ServiceRef, route: str, rule: str
                   ) -> Mapping[str, int]:
        """A caller's counters for one rule ("namespace/name" of the route, rule key)."""
        return self.window.counters.get((node, SeriesKey(ROUTE, service.host, route, rule)), {})

    def callers_of_rule(self, service: ServiceRef, route: str, rule: str) -> Iterator[str]:
        for node, key in sorted(self.window.counters):
            if key == SeriesKey(ROUTE, service.host, route, rule):
                yield node

    def rate(self, values: Mapping[str, int]) -> float:
        return requests(values) / self.seconds


def requests(values: Mapping[str, int]) -> int:
    return sum(values.get(name, 0) for name in REQUEST_FIELDS)


def _service(host: str) -> ServiceRef:
    name, _, namespace = host.partition(".")
    return ServiceRef(namespace, name)
