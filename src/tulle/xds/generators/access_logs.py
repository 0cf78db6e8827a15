"""Access loggers on the HTTP connection managers: tap streams and per-workload log files.

Both carry the same fields (named and typed in ``tulle.model.access_log``; ``FIELDS`` here
says how Envoy fills each): a tap entry is an access-log line that
Envoy sends to the control plane over gRPC (``envoy.access_loggers.http_grpc``) as custom tags,
a file line is the same table as ``json_format``.

Nothing here exists unless asked for. Without a tap session on a proxy and without
``spec.accessLog`` on its Service, :class:`ProxyLogs` gives None for every listener, and the
listeners carry no access logger at all: Envoy does no logging work for them.

Secret headers never leave the sidecar: for a redacted name Envoy itself evaluates only whether
the header is present (a CEL expression), never its value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.core.v3 import substitution_format_string_pb2 as formats
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.type.tracing.v3 import custom_tag_pb2
from google.protobuf import struct_pb2

from tulle.model.access_log import (
    REQUEST_HEADERS,
    RESPONSE_HEADERS,
    Direction,
    captured_headers,
)
from tulle.model.meta import ServiceRef
from tulle.model.taps import ProxyTaps
from tulle.security import REDACTED
from tulle.xds import names
from tulle.xds.generators.common import pack, seconds
from tulle.xds.proxy import ProxyLogging

TAP_LOG_NAME = "tulle-tap"
# The outbound listener's log of calls to hosts in no scope (refused under REGISTRY_ONLY): the
# control plane counts them by host for `tulle edges` and `tulle diagnose`.
REFUSED_LOG_NAME = "tulle-egress-refused"
LOG_TAG = "tulleLog"
REFUSED_EGRESS = "refused-egress"
# The outbound listener's log of requests to services with a DryRun HTTPRoute: the control
# plane decides where each would have gone (whatif/trials.py).
TRIAL_LOG_NAME = "tulle-route-trial"
ROUTE_TRIAL = "route-trial"
TRIAL_HEADER_TAG = "h."  # + a header's lower-case name: its (first) value
# Envoy batches entries per worker thread; a tap shows a request within this (plus a hop).
TAP_FLUSH_S = 0.1
REFUSED_FLUSH_S = 1.0
_OWN_IDENTITY = "{identity}"  # replaced by the proxy's own SPIFFE ID
_RBAC_META = "'envoy.filters.http.rbac'"
_WOULD_DENY_KEY = "dry_run_shadow_effective_policy_id"  # rbac.DRY_RUN_PREFIX + Envoy's key
_EGRESS_WOULD_DENY_KEY = "egress_" + _WOULD_DENY_KEY  # rbac.EGRESS_STAT_PREFIX + the above
_ABSENT = "{absent}"  # replaced by a CEL expression's "no value" (see _flat_fields)


@dataclass(frozen=True)
class LogField:
    """How Envoy fills one field of ``LOG_FIELD_KINDS``: its command operator on the called
    side (inbound) and on the calling side (outbound)."""

    name: str
    inbound: str
    outbound: str


def _both(name: str, operator: str) -> LogField:
    return LogField(name, operator, operator)


def _would_deny(key: str) -> str:
    """The RBAC policy an RBAC filter's shadow rules matched, stored under ``key``."""
    return (f"%CEL({_RBAC_META} in metadata.filter_metadata && "
            f"'{key}' in metadata.filter_metadata[{_RBAC_META}] ? "
            f"metadata.filter_metadata[{_RBAC_META}]['{key}'] : {{absent}})%")


FIELDS: tuple[LogField, ...] = (
    _both("time", "%START_TIME%"),
    # Inbound: the caller's verified identity (none over plaintext). Outbound: our own.
    LogField("source", "%DOWNSTREAM_PEER_URI_SAN%", _OWN_IDENTITY),
    # Outbound: the identity the called instance proved (none if no connection was made).
    LogField("destination", "%DOWNSTREAM_LOCAL_URI_SAN%", "%UPSTREAM_PEER_URI_SAN%"),
    _both("method", "%REQ(:METHOD)%"),
    _both("authority", "%REQ(:AUTHORITY)%"),
    _both("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    _both("status", "%RESPONSE_CODE%"),
    _both("latencyMs", "%DURATION%"),
    _both("bytesReceived", "%BYTES_RECEIVED%"),
    _both("bytesSent", "%BYTES_SENT%"),
    _both("flags", "%RESPONSE_FLAGS%"),
    LogField("mtls", "%CEL(connection.mtls)%",
             "%CEL(upstream.uri_san_peer_certificate != '')%"),
    LogField("tlsVersion", "%DOWNSTREAM_TLS_VERSION%", "%UPSTREAM_TLS_VERSION%"),
    _both("upstreamCluster", "%UPSTREAM_CLUSTER_RAW%"),
    _both("upstreamHost", "%UPSTREAM_HOST%"),
    _both("route", "%ROUTE_NAME%"),
    _both("details", "%RESPONSE_CODE_DETAILS%"),
    _both("sourceAddress", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    _both("requestId", "%REQ(X-REQUEST-ID)%"),
    # A gRPC call's outcome, hidden in an HTTP 200: grpc-status by name, and grpc-message
    # (percent-encoded on the wire). Both arrive as trailers, or as headers when the answer
    # is trailers-only (an error before any message): look in both.
    _both("grpcStatus", "%GRPC_STATUS(SNAKE_STRING)%"),
    _both("grpcMessage", "%CEL('grpc-message' in response.trailers ? "
                         "response.trailers['grpc-message'] : 'grpc-message' in "
                         "response.headers ? response.headers['grpc-message'] : {absent})%"),
    # The callee's RBAC filter records the policy its shadow rules (DryRun policies) matched;
    # its rules' action is always DENY, so a matched policy is a would-deny. On the calling
    # side, the caller's own egress filter does (AuthorizationPolicies on ExternalServices),
    # under its own key (its shadow stat prefix + Envoy's key).
    LogField("wouldDeny", _would_deny(_WOULD_DENY_KEY), _would_deny(_EGRESS_WOULD_DENY_KEY)),
)


@dataclass(frozen=True)
class TapSink:
    """Stream the listener's requests to the control plane: a tap session is attached.

    ``destinations``: on the calling side, only requests to these services; None: all."""

    token: str
    destinations: tuple[ServiceRef, ...] | None = None


@dataclass(frozen=True)
class HttpLogging:
    """The access loggers of one HTTP connection manager. Hashable: the compiler memoizes
    listeners on it."""

    direction: Direction
    workload: str  # the proxy's node id
    namespace: str  # the proxy's namespace: "books" means books.NAMESPACE there
    identity: str  # the proxy's own SPIFFE ID ("" without a CA)
    redacted: tuple[str, ...]  # lower-case header names whose values are never logged
    tap: TapSink | None = None
    file_path: str = ""  # "" : no access-log file
    # More request headers to carry (outbound): those DryRun HTTPRoutes match on, so that tap
    # can say where a request would have gone.
    trial_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyLogs:
    """The access loggers of each of one proxy's listeners; None: no logger there."""

    workload: str
    namespace: str
    identity: str
    redacted: tuple[str, ...]
    file_path: str  # "": its Service does not enable access logs
    taps: ProxyTaps
    token: str
    trial_headers: tuple[str, ...] = ()  # see HttpLogging

    def inbound(self) -> HttpLogging | None:
        return self._logging("inbound", TapSink(self.token) if self.taps.inbound else None)

    def outbound(self) -> HttpLogging | None:
        if self.taps.outbound:
            return self._logging("outbound", TapSink(self.token))
        if self.taps.destinations:
            return self._logging("outbound",
                                 TapSink(self.token, tuple(sorted(self.taps.destinations))))
        return self._logging("outbound", None)

    def upstream(self, service: ServiceRef) -> HttpLogging | None:
        """An ``--upstream`` listener: every request on it goes to ``service``."""
        tapped = self.taps.outbound or service in self.taps.destinations
        return self._logging("outbound", TapSink(self.token) if tapped else None)

    def _logging(self, direction: Direction, tap: TapSink | None) -> HttpLogging | None:
        if tap is None and not self.file_path:
            return None
        return HttpLogging(direction, self.workload, self.namespace, self.identity,
                           self.redacted, tap, self.file_path,
                           self.trial_headers if direction == "outbound" else ())


def proxy_logs(workload: str, namespace: str, identity: str, redacted: tuple[str, ...],
               access_log: bool, logging: ProxyLogging,
               trial_headers: tuple[str, ...] = ()) -> ProxyLogs:
    return ProxyLogs(workload, namespace, identity, redacted,
                     logging.access_log_path if access_log else "", logging.taps,
                     logging.tap_token, trial_headers)


# -- Envoy config -----------------------------------------------------------------------------

def http_access_logs(logging: HttpLogging) -> list[accesslog_pb2.AccessLog]:
    loggers = []
    if logging.file_path:
        loggers.append(file_access_log(logging))
    if logging.tap is not None:
        loggers.append(tap_access_log(logging, logging.tap))
    return loggers


def file_access_log(logging: HttpLogging) -> accesslog_pb2.AccessLog:
    line = struct_pb2.Struct()
    for name, operator in _flat_fields(logging, typed=True):
        if "." in name:
            group, header = name.split(".", 1)
            line.fields[group].struct_value.fields[header].string_value = operator
        else:
            line.fields[name].string_value = operator
    config = file_pb2.FileAccessLog(
        path=logging.file_path,
        log_format=formats.SubstitutionFormatString(json_format=line))
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=pack(config))


def tap_access_log(logging: HttpLogging, sink: TapSink) -> accesslog_pb2.AccessLog:
    config = als_pb2.HttpGrpcAccessLogConfig(common_config=als_pb2.CommonGrpcAccessLogConfig(
        log_name=TAP_LOG_NAME,
        grpc_service=_to_control_plane(sink.token),
        transport_api_version=config_source_pb2.ApiVersion.V3,
        buffer_flush_interval=seconds(TAP_FLUSH_S),
        custom_tags=[custom_tag_pb2.CustomTag(tag=name, value=operator)
                     for name, operator in _flat_fields(logging, typed=False)]))
    logger = accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc",
                                     typed_config=pack(config))
    if sink.destinations is not None:
        logger.filter.CopyFrom(destination_filter(sink.destinations, logging.namespace))
    return logger


def refused_egress_log(token: str) -> accesslog_pb2.AccessLog:
    """Only requests no scope took (``no_scope_filter``); each entry carries its host."""
    config = als_pb2.HttpGrpcAccessLogConfig(common_config=als_pb2.CommonGrpcAccessLogConfig(
        log_name=REFUSED_LOG_NAME,
        grpc_service=_to_control_plane(token),
        transport_api_version=config_source_pb2.ApiVersion.V3,
        buffer_flush_interval=seconds(REFUSED_FLUSH_S),
        custom_tags=[custom_tag_pb2.CustomTag(
            tag=LOG_TAG, literal=custom_tag_pb2.CustomTag.Literal(value=REFUSED_EGRESS))]))
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc",
                                   typed_config=pack(config), filter=no_scope_filter())


@dataclass(frozen=True)
class TrialWatch:
    """The services with a DryRun HTTPRoute (by host), and the headers their trials match on
    whose values may be logged (a redacted header's never is)."""

    hosts: tuple[str, ...]
    headers: tuple[str, ...]


def trial_log(token: str, watch: TrialWatch) -> accesslog_pb2.AccessLog:
    """Each request whose host chose one of ``watch``'s services (its virtual host: a
    rewrite of the host does not hide it), with what deciding its route needs."""
    tags = [custom_tag_pb2.CustomTag(tag=LOG_TAG, literal=custom_tag_pb2.CustomTag.Literal(
                value=ROUTE_TRIAL)),
            custom_tag_pb2.CustomTag(tag="vhost", value="%CEL(xds.virtual_host_name)%"),
            custom_tag_pb2.CustomTag(tag="method", value="%REQ(:METHOD)%"),
            custom_tag_pb2.CustomTag(tag="path", value="%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
            custom_tag_pb2.CustomTag(tag="cluster", value="%UPSTREAM_CLUSTER_RAW%"),
            custom_tag_pb2.CustomTag(tag="status", value="%RESPONSE_CODE%")]
    tags += [custom_tag_pb2.CustomTag(tag=TRIAL_HEADER_TAG + header,
                                      value=f"%REQ({header.upper()})%")
             for header in watch.headers]
    config = als_pb2.HttpGrpcAccessLogConfig(common_config=als_pb2.CommonGrpcAccessLogConfig(
        log_name=TRIAL_LOG_NAME,
        grpc_service=_to_control_plane(token),
        transport_api_version=config_source_pb2.ApiVersion.V3,
        buffer_flush_interval=seconds(REFUSED_FLUSH_S),
        custom_tags=tags))
    chosen = accesslog_pb2.AccessLogFilter(extension_filter=accesslog_pb2.ExtensionFilter(
        name="envoy.access_loggers.extension_filters.cel",
        typed_config=pack(cel_pb2.ExpressionFilter(
            expression=f"has(xds.virtual_host_name) && "
                       f"xds.virtual_host_name in {_cel_list(list(watch.hosts))}"))))
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc",
                                   typed_config=pack(config), filter=chosen)


def _to_control_plane(token: str) -> grpc_service_pb2.GrpcService:
    """The access-log service: the same cluster, and the same kind of per-workload
    credential, as the ADS stream."""
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=names.XDS_CLUSTER),
        initial_metadata=[base_pb2.HeaderValue(key="authorization", value=f"Bearer {token}")])


def no_scope_filter() -> accesslog_pb2.AccessLogFilter:
    """Requests whose host chose no scope: Envoy answered 404 with NR, like a request that
    reached a route table and matched none of its routes; the two differ only in that no
    virtual host was chosen, which a CEL filter tells (verified on Envoy 1.40). The flag is
    tested first: other requests cost one flag test."""
    no_route = accesslog_pb2.AccessLogFilter(
        response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=["NR"]))
    no_host = accesslog_pb2.AccessLogFilter(extension_filter=accesslog_pb2.ExtensionFilter(
        name="envoy.access_loggers.extension_filters.cel",
        typed_config=pack(cel_pb2.ExpressionFilter(expression="!has(xds.virtual_host_name)"))))
    return accesslog_pb2.AccessLogFilter(and_filter=accesslog_pb2.AndFilter(
        filters=[no_route, no_host]))


def destination_filter(destinations: tuple[ServiceRef, ...],
                       caller_namespace: str) -> accesslog_pb2.AccessLogFilter:
    """Only requests to these services: by the cluster the route picked, or by the host the
    caller named (that covers requests that never got a cluster: no route, faults)."""
    clusters = [names.outbound_cluster(ref) for ref in destinations]
    hosts = [host for ref in destinations for host in ref.hosts_from(caller_namespace)]
    expression = (f"xds.cluster_name in {_cel_list(clusters)} || "
                  f"request.host in {_cel_list(hosts)}")
    return accesslog_pb2.AccessLogFilter(extension_filter=accesslog_pb2.ExtensionFilter(
        name="envoy.access_loggers.extension_filters.cel",
        typed_config=pack(cel_pb2.ExpressionFilter(expression=expression))))


def _flat_fields(logging: HttpLogging, typed: bool) -> Iterator[tuple[str, str]]:
    """(field name, Envoy format) for every field; headers as ``requestHeaders.NAME``.

    ``typed`` (JSON lines): CEL results keep their type, so booleans stay booleans and nothing
    is null. Custom tags are strings, and Envoy leaves out the empty ones: there an absent
    header is an empty string, and is not sent at all."""
    cel, absent = ("%TYPED_CEL(", "null") if typed else ("%CEL(", "''")
    yield "workload", _literal(logging.workload)
    yield "direction", logging.direction
    for field in FIELDS:
        operator = field.inbound if logging.direction == "inbound" else field.outbound
        yield field.name, operator.replace(_OWN_IDENTITY, _literal(logging.identity)).replace(
            "%CEL(", cel).replace(_ABSENT, absent)
    for group, source, cel_map in ((REQUEST_HEADERS, "REQ", "request.headers"),
                                   (RESPONSE_HEADERS, "RESP", "response.headers")):
        names = captured_headers(logging.redacted)[group]
        if group == REQUEST_HEADERS:
            names = tuple(sorted({*names, *logging.trial_headers}))
        for header in names:
            if header in logging.redacted:
                # Only whether it is present: the value is never formatted.
                operator = (f"{cel}'{_cel_safe(header)}' in {cel_map} ? '{REDACTED}' : "
                            f"{absent})%")
            else:
                operator = f"%{source}({header.upper()})%"
            yield f"{group}.{header}", operator


def _literal(text: str) -> str:
    return text.replace("%", "%%")


def _cel_safe(text: str) -> str:
    if any(c in text for c in "'\\%()"):
        raise ValueError(f"cannot quote {text!r} in a CEL expression")
    return text


def _cel_list(items: list[str]) -> str:
    return "[" + ", ".join(f"'{_cel_safe(item)}'" for item in items) + "]"
