"""TUL1030: calls refused under REGISTRY_ONLY, by host; a typo of a mesh service is named, a
host outside the mesh gets the ExternalService fix; TUL1012 leaves them to it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Severity
from tulle.diagnose.rules import egress, routing
from tulle.model.mesh import build_mesh
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

WEB = "web-1.default"
OUT = SeriesKey("out", "books.default")
PROXY = SeriesKey("proxy")


def refused(host: str, n: int) -> tuple[tuple[str, SeriesKey], dict[str, int]]:
    return (WEB, SeriesKey("refused", host)), {"rq5": n, "refused": n}


def evidence(*counters: tuple[tuple[str, SeriesKey], Mapping[str, int]]) -> Evidence:
    registered = (workload("web-1", "web"), workload("books-1", "books"))
    mesh = build_mesh(2, [], registered)
    nodes = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in registered}
    window = Window(60.0, 60.0, MappingProxyType(dict(counters)), MappingProxyType({}),
                    MappingProxyType({}))
    return Evidence(mesh=mesh, window=window, nodes=MappingProxyType(nodes), now=1.0)


def findings(given: Evidence) -> list[tuple[str, str, Severity]]:
    found = diagnose(given, rules=(*egress.RULES, *routing.RULES)).findings
    return [(f.code, f.subject, f.severity) for f in found]


@pytest.mark.parametrize(("counters", "expected"), [
    ((refused("api.example.com:443", 3), ((WEB, OUT), {"rq2": 100}),
      ((WEB, PROXY), {"noroute": 3})),
     [("TUL1030", "proxy/web-1.default", Severity.WARNING)]),
    ((refused("api.example.com:443", 30), ((WEB, OUT), {"rq2": 100}),
      ((WEB, PROXY), {"noroute": 30})),
     [("TUL1030", "proxy/web-1.default", Severity.ERROR)]),
    # Other no-route 404s beside the refusals: both findings.
    ((refused("api.example.com", 2), ((WEB, OUT), {"rq2": 10}),
      ((WEB, PROXY), {"noroute": 5})),
     [("TUL1030", "proxy/web-1.default", Severity.ERROR),
      ("TUL1012", "proxy/web-1.default", Severity.ERROR)]),
    ((((WEB, OUT), {"rq2": 10}),), []),
], ids=["a few", "many", "beside no-route 404s", "none"])
def test_refusals_are_their_own_finding(
        counters: tuple[tuple[tuple[str, SeriesKey], dict[str, int]], ...],
        expected: list[tuple[str, str, Severity]]) -> None:
    assert findings(evidence(*counters)) == expected


def test_a_typo_is_named_and_a_host_outside_gets_the_external_service_fix() -> None:
    (found,) = diagnose(evidence(refused("bookz", 2), refused("api.example.com:8443", 1)),
                        rules=egress.RULES).findings
    text = "\n".join(found.evidence)
    assert "bookz (2), api.example.com:8443 (1)" in text
    assert "bookz looks like the mesh service books" in text
    assert "call books instead of bookz" in found.fix
    assert "host: api.example.com," in found.fix and "ALLOW_ANY" in found.fix
    assert "REGISTRY_ONLY" in text
