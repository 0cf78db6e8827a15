"""The Grafana dashboards in dashboards/grafana/ cannot drift from the code: each is a Grafana
dashboard, and every metric and label its PromQL uses is one tulle exports. The metrics are
also all documented in docs/observability.md."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from tests.support.dashboards import DASHBOARDS, ROOT, expressions, load
from tulle.controlplane.metrics import CONTROLPLANE_FAMILIES
from tulle.telemetry import prometheus
from tulle.telemetry.schema import (
    AUTHZ,
    AUTHZ_DENIED,
    AUTHZ_WOULD_DENY,
    INBOUND,
    INBOUND_PLAINTEXT,
    LATENCY_FIELDS,
    LATENCY_SUM,
    OUTBOUND,
    PROXY,
    REQUEST_FIELDS,
    ROUTE,
    UPGRADE_DURATION_FIELDS,
    UPGRADE_DURATION_SUM,
    SeriesKey,
)

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
GRAFANA_VARIABLES = frozenset({"__rate_interval", "__interval", "__range"})
# Every field a sidecar series can carry, so that every family has a sample.
SIDECAR_FIELDS = (*REQUEST_FIELDS, *LATENCY_FIELDS, LATENCY_SUM, "rx", "tx", "cx", "cxt",
                  "retry", "retry_overflow", "timeout", "overflow", "cfail", "app_cfail",
                  "eject", "healthy", "members", "limited", "tls_err", "mem", "stats",
                  "uptime", "xds", "upg", "upg_cx", "upg_rx", "upg_tx",
                  *UPGRADE_DURATION_FIELDS, UPGRADE_DURATION_SUM)


@cache
def exported() -> dict[str, tuple[str, frozenset[str]]]:
    """Every family tulle exports: name -> (type, label names)."""
    values = dict.fromkeys(SIDECAR_FIELDS, 1)
    series = {SeriesKey(INBOUND): values, SeriesKey(INBOUND_PLAINTEXT): values,
              SeriesKey(OUTBOUND, "books.default"): values,
              SeriesKey(ROUTE, "books.default", "default/books", "search"): values,
              SeriesKey(PROXY): values,
              SeriesKey(AUTHZ, rule="AuthorizationPolicy:default/p:0"): {
                  AUTHZ_DENIED: 1, AUTHZ_WOULD_DENY: 1}}
    proxy = (("namespace", "default"), ("workload", "web-1"), ("service", "web"))
    families = {f.name: (f.kind, frozenset(k for _, labels, _ in f.samples for k, _ in labels)
                         - {"le"})
                for f in prometheus.sidecar_families(series, proxy)}
    # The sidecar's declared families (its HELP table) must all have come out above.
    declared = set(prometheus._Families.HELP)
    assert declared == set(families), f"add fields for {declared - set(families)} above"
    for name, (kind, _, labels) in CONTROLPLANE_FAMILIES.items():
        families[name] = (kind, frozenset(labels))
    return families


def family_of(name: str) -> str | None:
    families = exported()
    if name in families:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and families.get(base, ("",))[0] == "histogram":
            return base
    return None


_METRIC = re.compile(r"\b(tulle_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def problems(expr: str) -> list[str]:
    found = []
    families = exported()
    used: list[str] = []
    for match in _METRIC.finditer(expr):
        name = match.group(1)
        family = family_of(name)
        if family is None:
            found.append(f"{name} is not a metric tulle exports")
            continue
        used.append(family)
        allowed = families[family][1] | TARGET_LABELS | (
            {"le"} if name.endswith("_bucket") else set())
        for label in _MATCHER.findall(match.group(2) or ""):
            if label not in allowed:
                found.append(f"{name} has no label {label!r}")
    if not used:
        found.append("uses no tulle metric")
    labels = set().union(*(families[f][1] for f in used)) | TARGET_LABELS | {"le"}
    for grouping in _GROUPING.findall(expr):
        for label in (x.strip() for x in grouping.split(",") if x.strip()):
            if label not in labels:
                found.append(f"groups by {label!r}, which none of {sorted(set(used))} has")
    return found


@pytest.mark.parametrize("expr,expected", [
    ('sum by (service) (rate(tulle_requests_total{direction="inbound"}[5m]))', []),
    ("histogram_quantile(0.9, sum by (le) (rate(tulle_request_duration_seconds_bucket[5m])))",
     []),
    ("tulle_requests_count", ["tulle_requests_count is not a metric tulle exports",
                              "uses no tulle metric"]),
    ('tulle_requests_total{dst="x"}', ["tulle_requests_total has no label 'dst'"]),
    ("sum by (kind) (tulle_proxy_stats)",
     ["groups by 'kind', which none of ['tulle_proxy_stats'] has"]),
    ("up", ["uses no tulle metric"]),
])
def test_the_checker_catches_drift(expr: str, expected: list[str]) -> None:
    assert problems(expr) == expected


def test_there_are_the_three_dashboards() -> None:
    assert [p.name for p in DASHBOARDS] == ["mesh-overview.json", "service.json",
                                            "workload.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_has_grafanas_shape(path: Path) -> None:
    board = load(path)
    assert isinstance(board["title"], str) and board["title"].startswith("tulle / ")
    assert re.fullmatch(r"tulle-[a-z-]+", board["uid"])
    assert isinstance(board["schemaVersion"], int)
    assert "tulle" in board["tags"]
    assert {"from", "to"} <= set(board["time"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "namespace" in variables
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat", "bargauge", "gauge", "table")
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    # Every $variable a query or title uses is defined (or is one of Grafana's own).
    text = json.dumps(board["panels"]) + json.dumps(
        [v.get("query") for v in board["templating"]["list"]])
    for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
        assert name in variables or name in GRAFANA_VARIABLES, f"${name} is not defined"


def test_every_dashboard_variable_is_namespace_service_or_workload() -> None:
    names = {v["name"] for p in DASHBOARDS for v in load(p)["templating"]["list"]}
    assert names == {"datasource", "namespace", "service", "workload"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_expression_uses_exported_metrics_and_labels(path: Path) -> None:
    found = [f"{where}: {problem}\n    {expr}" for where, expr in expressions(load(path))
             for problem in problems(expr)]
    assert not found, "\n".join(found)


def test_every_exported_metric_is_documented() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    missing = [name for name in exported() if f"`{name}`" not in text]
    assert not missing, f"document these in docs/observability.md: {missing}"
