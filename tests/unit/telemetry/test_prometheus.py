"""The Prometheus text format and the sidecar's metric families (a public contract)."""

from __future__ import annotations

import pytest

from tulle.telemetry.prometheus import Family, Labels, render, sidecar_families
from tulle.telemetry.schema import SeriesKey

IN = SeriesKey("in")
PLAIN = SeriesKey("in_plain")
BOOKS = SeriesKey("out", "books.default")
MAIN = SeriesKey("route", "books.default", "default/books", "main")
PROXY = SeriesKey("proxy")
WHO: Labels = (("namespace", "default"), ("workload", "books-1"), ("service", "books"))
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Bucket bounds in seconds, as written on the wire.
LE = ("0.001", "0.002", "0.003", "0.005", "0.0075", "0.01", "0.015", "0.02", "0.03", "0.05",
      "0.075", "0.1", "0.15", "0.2", "0.3", "0.5", "0.75", "1", "1.5", "2", "3", "5", "10",
      "30", "60", "+Inf")

Samples = dict[tuple[str, Labels], float]


def families_of(series: dict[SeriesKey, dict[str, int]]) -> dict[str, Family]:
    return {f.name: f for f in sidecar_families(series, WHO)}


def samples(family: Family) -> Samples:
    return {(name, labels): value for name, labels, value in family.samples}


@pytest.mark.parametrize(("families", "text"), [
    ([Family("x_total", "counter", "Xs.", [("x_total", (("a", "1"), ("b", "2")), 3)])],
     '# HELP x_total Xs.\n# TYPE x_total counter\nx_total{a="1",b="2"} 3\n'),
    ([Family("up", "gauge", "Up.", [("up", (), 1.0)])],
     "# HELP up Up.\n# TYPE up gauge\nup 1\n"),
    ([Family("a", "gauge", "A.", [("a", (), 1)]), Family("empty", "counter", "None."),
      Family("b", "gauge", "B.", [("b", (("k", "v"),), 2), ("b", (("k", "w"),), 0)])],
     '# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb{k="v"} 2\nb{k="w"} 0\n'),
], ids=["labels", "no labels", "empty family left out"])
def test_render(families: list[Family], text: str) -> None:
    assert render(families) == text


@pytest.mark.parametrize(("value", "escaped"), [
    ("a\\b", "a\\\\b"),
    ("two\nlines", "two\\nlines"),
    ("\\n", "\\\\n"),  # a backslash and an n, not a newline
    ('\\"', '\\\\\\"'),
], ids=["backslash", "newline", "literal backslash-n", "backslash quote"])
def test_label_escaping(value: str, escaped: str) -> None:
    family = Family("m", "gauge", "M.", [("m", (("v", value),), 1)])
    assert render([family]).splitlines()[2] == f'm{{v="{escaped}"}} 1'


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (3.0, "3"), (12345678901234, "12345678901234"), (0.0075, "0.0075"),
])
def test_number_format(value: float, text: str) -> None:
    assert render([Family("n", "gauge", "N.", [("n", (), value)])]).splitlines()[2] == \
        f"n {text}"


@pytest.mark.parametrize(("key", "name", "labels"), [
    (IN, "tulle_requests_total", (("direction", "inbound"), *WHO, ("tls", "mtls"))),
    (PLAIN, "tulle_requests_total", (("direction", "inbound"), *WHO, ("tls", "plaintext"))),
    (BOOKS, "tulle_requests_total",
     (("direction", "outbound"), *WHO, ("dst_service", "books"), ("dst_namespace", "default"))),
    (MAIN, "tulle_route_requests_total",
     (("direction", "outbound"), *WHO, ("dst_service", "books"), ("dst_namespace", "default"),
      ("route", "default/books"), ("rule", "main"))),
    (SeriesKey("egress", "api.example.com:443"), "tulle_requests_total",
     (("direction", "egress"), *WHO, ("dst_host", "api.example.com"), ("dst_port", "443"))),
    (SeriesKey("egress", "*"), "tulle_requests_total",
     (("direction", "egress"), *WHO, ("dst_host", "*"), ("dst_port", ""))),
], ids=["inbound", "plaintext", "outbound", "route", "egress", "passthrough"])
def test_every_code_class(key: SeriesKey, name: str, labels: Labels) -> None:
    family = families_of({key: {"rq2": 7, "rq5": 1, "c503": 1}})[name]
    assert family.kind == "counter"
    assert samples(family) == {
        (name, (*labels, ("code_class", c))): v for c, v in zip(CLASSES, (0, 7, 0, 0, 1),
                                                                strict=True)}


@pytest.mark.parametrize(("key", "name"), [
    (IN, "tulle_request_duration_seconds"),
    (MAIN, "tulle_route_request_duration_seconds"),
], ids=["series", "route"])
def test_histogram(key: SeriesKey, name: str) -> None:
    values = {"lat0": 2, "lat3": 1, "lat25": 1, "latsum": 1500, "rq2": 4}
    family = families_of({key: values})[name]
    assert family.kind == "histogram"
    rows = [(n, dict(labels).get("le"), v) for n, labels, v in family.samples]
    counts = [2, 2, 2, *[3] * 22, 4]
    assert rows == [*((f"{name}_bucket", le, c) for le, c in zip(LE, counts, strict=True)),
                    (f"{name}_sum", None, 1.5), (f"{name}_count", None, 4)]


def test_upgraded_connection_durations() -> None:
    # Bounds in seconds: 0.1, 1, 10, 60, 600, 3600, then +Inf.
    values = {"upgd0": 1, "upgd2": 2, "upgd6": 1, "upgdsum": 7_205_000, "upg": 5}
    family = families_of({IN: values})["tulle_upgraded_connection_duration_seconds"]
    assert family.kind == "histogram"
    rows = [(n, dict(labels).get("le"), v) for n, labels, v in family.samples]
    name = family.name
    assert rows == [*((f"{name}_bucket", le, c) for le, c in zip(
        ("0.1", "1", "10", "60", "600", "3600", "+Inf"), (1, 1, 3, 3, 3, 3, 4), strict=True)),
        (f"{name}_sum", None, 7205.0), (f"{name}_count", None, 4)]


def test_no_histogram_without_latency() -> None:
    assert list(families_of({BOOKS: {"rq2": 1}})) == ["tulle_requests_total"]


def test_route_families_are_separate() -> None:
    families = families_of({MAIN: {"rq2": 1, "retry": 2, "timeout": 1, "lat0": 1}})
    assert list(families) == ["tulle_route_requests_total",
                              "tulle_route_request_duration_seconds"]


OUT_LABELS: Labels = (("direction", "outbound"), *WHO, ("dst_service", "books"),
                      ("dst_namespace", "default"))
IN_LABELS: Labels = (("direction", "inbound"), *WHO, ("tls", "mtls"))


@pytest.mark.parametrize(("key", "field", "name", "kind"), [
    (BOOKS, "rx", "tulle_bytes_received_total", "counter"),
    (IN, "cx", "tulle_connections_active", "gauge"),
    (BOOKS, "overflow", "tulle_circuit_breaker_overflows_total", "counter"),
    (BOOKS, "cfail", "tulle_connect_failures_total", "counter"),
    (IN, "app_cfail", "tulle_connect_failures_total", "counter"),
    (BOOKS, "healthy", "tulle_endpoints_healthy", "gauge"),
    (BOOKS, "members", "tulle_endpoints", "gauge"),
    (IN, "limited", "tulle_rate_limited_total", "counter"),
    (IN, "upg", "tulle_upgraded_connections_total", "counter"),
    (IN, "upg_cx", "tulle_upgraded_connections_active", "gauge"),
    (IN, "upg_rx", "tulle_upgraded_bytes_received_total", "counter"),
    (IN, "upg_tx", "tulle_upgraded_bytes_sent_total", "counter"),
])
def test_field_families(key: SeriesKey, field: str, name: str, kind: str) -> None:
    family = families_of({key: {field: 42}})[name]
    assert family.kind == kind
    assert samples(family) == {(name, OUT_LABELS if key == BOOKS else IN_LABELS): 42}


def test_fields_without_a_family() -> None:
    families = families_of({BOOKS: {"c503": 1, "reset": 2, "ejected": 1, "retry_exhausted": 3,
                                    "san_fail": 1, "tls_ok": 9}})
    assert list(families) == ["tulle_requests_total"]


def test_proxy_families() -> None:
    families = families_of({PROXY: {"mem": 1048576, "stats": 412, "uptime": 30, "xds": 1}})
    assert {name: (f.kind, samples(f)) for name, f in families.items()} == {
        "tulle_proxy_memory_bytes": ("gauge", {("tulle_proxy_memory_bytes", WHO): 1048576}),
        "tulle_proxy_stats": ("gauge", {("tulle_proxy_stats", WHO): 412}),
        "tulle_proxy_uptime_seconds": ("gauge", {("tulle_proxy_uptime_seconds", WHO): 30}),
        "tulle_proxy_xds_connected": ("gauge", {("tulle_proxy_xds_connected", WHO): 1}),
    }


def test_authorization_families_name_the_rbac_policy() -> None:
    denied = SeriesKey("authz", rule="AuthorizationPolicy:default/no-ops:ops")
    trial = SeriesKey("authz", rule="no-ALLOW-rule-matched:default/readers")
    families = families_of({denied: {"denied": 3}, trial: {"would_deny": 2}})
    labels = (("direction", "inbound"), *WHO)
    assert {name: (f.kind, samples(f)) for name, f in families.items()} == {
        "tulle_authorization_denied_total": ("counter", {(
            "tulle_authorization_denied_total",
            (*labels, ("policy", "AuthorizationPolicy:default/no-ops:ops"))): 3}),
        "tulle_authorization_would_deny_total": ("counter", {(
            "tulle_authorization_would_deny_total",
            (*labels, ("policy", "no-ALLOW-rule-matched:default/readers"))): 2}),
    }


def test_sidecar_metrics_text() -> None:
    text = render(sidecar_families({PROXY: {"mem": 1024}, IN: {"rq2": 7, "rq5": 1, "cx": 2}},
                                   WHO))
    who = 'namespace="default",workload="books-1",service="books"'
    assert text == (
        "# HELP tulle_requests_total HTTP requests completed, by response code class.\n"
        "# TYPE tulle_requests_total counter\n"
        f'tulle_requests_total{{direction="inbound",{who},tls="mtls",code_class="1xx"}} 0\n'
        f'tulle_requests_total{{direction="inbound",{who},tls="mtls",code_class="2xx"}} 7\n'
        f'tulle_requests_total{{direction="inbound",{who},tls="mtls",code_class="3xx"}} 0\n'
        f'tulle_requests_total{{direction="inbound",{who},tls="mtls",code_class="4xx"}} 0\n'
        f'tulle_requests_total{{direction="inbound",{who},tls="mtls",code_class="5xx"}} 1\n'
        "# HELP tulle_connections_active Open connections.\n"
        "# TYPE tulle_connections_active gauge\n"
        f'tulle_connections_active{{direction="inbound",{who},tls="mtls"}} 2\n'
        "# HELP tulle_proxy_memory_bytes Memory allocated by the sidecar's Envoy.\n"
        "# TYPE tulle_proxy_memory_bytes gauge\n"
        f"tulle_proxy_memory_bytes{{{who}}} 1024\n")
