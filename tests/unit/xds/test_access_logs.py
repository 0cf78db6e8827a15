"""Access loggers in the listeners: none unless a tap or the Service asks, the same fields in
tap entries and log lines, and no secret header value ever formatted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.service.discovery.v3 import discovery_pb2

from tests.unit.xds.envoy_side import LDS
from tests.unit.xds.meshes import mesh, proxy, workload
from tulle.model.access_log import LOG_FIELD_KINDS, Direction
from tulle.model.meta import ServiceRef
from tulle.model.taps import ProxyTaps
from tulle.xds import names
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.config import ProxyConfig
from tulle.xds.generators import access_logs
from tulle.xds.generators.access_logs import HttpLogging, TapSink, http_access_logs
from tulle.xds.proxy import NO_LOGGING, ProxyLogging

BOOKS = ServiceRef("default", "books")
AUTHORS = ServiceRef("default", "authors")
WEB = workload("web-1", upstreams={"books": 9000, "authors": 9001})
ACCESS_LOG = {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
              "metadata": {"name": "web"}, "spec": {"accessLog": {"enabled": True}}}
REDACT = {"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
          "spec": {"accessLog": {"redactHeaders": ["X-Api-Key"]}}}


def compiled(logging: ProxyLogging | None = None, manifests: tuple[Any, ...] = ()
             ) -> ProxyConfig:
    snapshot = mesh(1, [WEB, workload("books-1"), workload("authors-1")], manifests)
    compiler = ConfigCompiler()
    if logging is None:
        return compiler.compile(snapshot, proxy(snapshot, "web-1.default"))
    return compiler.compile(snapshot, proxy(snapshot, "web-1.default"), logging)


def managers(config: ProxyConfig) -> dict[str, list[hcm.HttpConnectionManager]]:
    """The HTTP connection managers of every listener, by listener name."""
    out: dict[str, list[hcm.HttpConnectionManager]] = {}
    for name, resource in config.of_type(LDS).items():
        listener = listener_pb2.Listener()
        discovery_pb2.DiscoveryResponse.FromString(resource.sotw_entry).resources[0].Unpack(
            listener)
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                manager = hcm.HttpConnectionManager()
                if network_filter.typed_config.Unpack(manager):
                    out.setdefault(name, []).append(manager)
    return out


REFUSED = "refused egress"


def logger_names(config: ProxyConfig) -> dict[str, list[str]]:
    """Logger kinds by listener; the outbound log of refused calls as REFUSED."""
    def kind(logger: Any) -> str:
        config = als_pb2.HttpGrpcAccessLogConfig()
        if logger.typed_config.Unpack(config) and \
                config.common_config.log_name == access_logs.REFUSED_LOG_NAME:
            return REFUSED
        return str(logger.name)
    return {name: [kind(logger) for m in ms for logger in m.access_log]
            for name, ms in managers(config).items()}


def test_without_tap_or_access_log_only_refused_calls_are_logged() -> None:
    """The near-zero-cost property, by construction: no session and no Service switch gives
    no access logger but the outbound listener's log of calls refused under REGISTRY_ONLY,
    which a request passes after one response-flag test; none without a credential."""
    plain = compiled()
    assert compiled(NO_LOGGING).versions[LDS] == plain.versions[LDS]
    assert all(names == [] for names in logger_names(plain).values())
    assert set(logger_names(plain)) == {"outbound", "inbound", "upstream|9000", "upstream|9001"}
    config = compiled(ProxyLogging(tap_token="t", access_log_path="/w/access.log"))
    assert logger_names(config) == {"outbound": [REFUSED], "inbound": [],
                                    "upstream|9000": [], "upstream|9001": []}
    [logger] = managers(config)["outbound"][0].access_log
    first, second = logger.filter.and_filter.filters
    assert list(first.response_flag_filter.flags) == ["NR"]
    expression = cel_pb2.ExpressionFilter()
    assert second.extension_filter.typed_config.Unpack(expression)
    assert expression.expression == "!has(xds.virtual_host_name)"
    common = _grpc(logger).common_config
    assert [(m.key, m.value) for m in common.grpc_service.initial_metadata] == [
        ("authorization", "Bearer t")]
    # Under ALLOW_ANY nothing is refused: no logger.
    allow_any = compiled(ProxyLogging(tap_token="t"), ({
        "apiVersion": "tulle.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
        "spec": {"outbound": {"mode": "ALLOW_ANY"}}},))
    assert logger_names(allow_any)["outbound"] == []


TAP = "envoy.access_loggers.http_grpc"
FILE = "envoy.access_loggers.file"
# (case, taps, Service access log on, loggers by listener)
CASES: list[tuple[str, ProxyTaps, bool, dict[str, list[str]]]] = [
    ("inbound tap", ProxyTaps(inbound=True), False,
     {"inbound": [TAP], "outbound": [REFUSED], "upstream|9000": [], "upstream|9001": []}),
    ("workload tap", ProxyTaps(inbound=True, outbound=True), False,
     {"inbound": [TAP], "outbound": [TAP, REFUSED], "upstream|9000": [TAP],
      "upstream|9001": [TAP]}),
    ("service tap on a caller", ProxyTaps(destinations=frozenset({BOOKS})), False,
     {"inbound": [], "outbound": [TAP, REFUSED], "upstream|9000": [TAP], "upstream|9001": []}),
    ("access log only", ProxyTaps(), True,
     {"inbound": [FILE], "outbound": [FILE, REFUSED], "upstream|9000": [FILE],
      "upstream|9001": [FILE]}),
    ("both", ProxyTaps(inbound=True), True,
     {"inbound": [FILE, TAP], "outbound": [FILE, REFUSED], "upstream|9000": [FILE],
      "upstream|9001": [FILE]}),
]


@pytest.mark.parametrize(("taps", "access_log", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_loggers_follow_the_taps_and_the_service_switch(
        taps: ProxyTaps, access_log: bool, expected: dict[str, list[str]]) -> None:
    config = compiled(ProxyLogging(taps, "token", "/state/workloads/web-1.default/access.log"),
                      (ACCESS_LOG,) if access_log else ())
    assert logger_names(config) == expected


def _grpc(logger: Any) -> als_pb2.HttpGrpcAccessLogConfig:
    config = als_pb2.HttpGrpcAccessLogConfig()
    assert logger.typed_config.Unpack(config)
    return config


def test_tap_entries_go_to_the_xds_cluster_with_the_proxys_access_log_credential() -> None:
    config = compiled(ProxyLogging(ProxyTaps(inbound=True), "the-token", ""))
    [logger] = managers(config)["inbound"][0].access_log
    common = _grpc(logger).common_config
    assert common.grpc_service.envoy_grpc.cluster_name == names.XDS_CLUSTER
    assert [(m.key, m.value) for m in common.grpc_service.initial_metadata] == [
        ("authorization", "Bearer the-token")]
    assert common.log_name == access_logs.TAP_LOG_NAME
    assert common.buffer_flush_interval.ToMilliseconds() == 100
    assert not logger.HasField("filter")  # the called side logs everything it serves


def test_a_caller_logs_only_requests_for_the_tapped_services() -> None:
    config = compiled(ProxyLogging(ProxyTaps(destinations=frozenset({BOOKS, AUTHORS})), "t"))
    logger, _refused = managers(config)["outbound"][0].access_log
    expression = cel_pb2.ExpressionFilter()
    assert logger.filter.extension_filter.typed_config.Unpack(expression)
    assert expression.expression == (
        "xds.cluster_name in ['outbound|authors.default', 'outbound|books.default'] || "
        "request.host in ['authors', 'authors.default', 'books', 'books.default']")
    # An --upstream port leads to one service: no filter needed there.
    [bound] = managers(config)["upstream|9000"][0].access_log
    assert not bound.HasField("filter")


def test_other_namespaces_reach_a_service_by_its_full_name_only() -> None:
    assert BOOKS.hosts_from("default") == ("books", "books.default")
    assert BOOKS.hosts_from("shop") == ("books.default",)


def logging(direction: Direction, **changes: Any) -> HttpLogging:
    base: dict[str, Any] = {
        "direction": direction, "workload": "web-1.default", "namespace": "default",
        "identity": "spiffe://tulle.local/ns/default/sa/web",
        "redacted": ("authorization", "cookie", "set-cookie", "x-api-key"),
        "tap": TapSink("t"), "file_path": "/w/access.log"}
    return HttpLogging(**(base | changes))


def formats(direction: Direction) -> tuple[dict[str, str], dict[str, str]]:
    """(file fields flattened as group.name, tap custom tags)."""
    file_logger, tap_logger = http_access_logs(logging(direction))
    line = file_pb2.FileAccessLog()
    assert file_logger.typed_config.Unpack(line)
    flat: dict[str, str] = {}
    for key, value in line.log_format.json_format.fields.items():
        if value.HasField("struct_value"):
            flat.update({f"{key}.{k}": v.string_value
                         for k, v in value.struct_value.fields.items()})
        else:
            flat[key] = value.string_value
    tags = {t.tag: t.value for t in _grpc(tap_logger).common_config.custom_tags}
    return flat, tags


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_tap_entries_and_log_lines_have_the_same_fields(
        direction: Direction) -> None:
    flat, tags = formats(direction)
    assert set(flat) == set(tags)
    assert {f.name for f in access_logs.FIELDS} | {"workload", "direction"} <= set(flat)
    # The same operators, except CEL: typed in JSON lines, strings (empty: left out) in tags.
    for name, operator in flat.items():
        assert tags[name] == operator.replace("%TYPED_CEL(", "%CEL(").replace(
            ": null)%", ": '')%"), name
    assert flat["direction"] == direction and flat["workload"] == "web-1.default"


def test_the_calling_side_names_its_own_identity_as_the_source() -> None:
    flat, _ = formats("outbound")
    assert flat["source"] == "spiffe://tulle.local/ns/default/sa/web"
    assert flat["destination"] == "%UPSTREAM_PEER_URI_SAN%"
    inbound, _ = formats("inbound")
    assert inbound["source"] == "%DOWNSTREAM_PEER_URI_SAN%"


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_no_secret_header_value_is_ever_formatted(direction: Direction) -> None:
    flat, tags = formats(direction)
    for operators in (flat, tags):
        text = " ".join(operators.values()).lower()
        for secret in ("authorization", "cookie", "x-api-key"):
            assert not re.search(rf"%(req|resp)\([^)]*{secret}", text), secret
    assert flat["requestHeaders.authorization"] == (
        "%TYPED_CEL('authorization' in request.headers ? '[redacted]' : null)%")
    assert tags["responseHeaders.x-api-key"] == (
        "%CEL('x-api-key' in response.headers ? '[redacted]' : '')%")
    assert flat["requestHeaders.user-agent"] == "%REQ(USER-AGENT)%"
    # Each secret only on the side where it can occur.
    assert "requestHeaders.set-cookie" not in flat and "responseHeaders.cookie" not in flat


def test_redacted_names_from_the_mesh_are_lower_case_and_include_the_built_in_ones() -> None:
    config = compiled(ProxyLogging(ProxyTaps(inbound=True), "t"), (REDACT,))
    [logger] = managers(config)["inbound"][0].access_log
    tags = {t.tag for t in _grpc(logger).common_config.custom_tags}
    assert {"requestHeaders.x-api-key", "requestHeaders.authorization",
            "requestHeaders.cookie", "responseHeaders.set-cookie"} <= tags


def test_a_name_that_could_break_out_of_its_expression_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot quote"):
        http_access_logs(logging("inbound", redacted=("x') || true || ('",)))


def test_every_typed_log_field_has_an_envoy_operator() -> None:
    assert [f.name for f in access_logs.FIELDS] == list(LOG_FIELD_KINDS)
