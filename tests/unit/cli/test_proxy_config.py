"""proxy-config's reading of config_dump, its tables, and the --diff logic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tulle.cli import config_dump
from tulle.cli.cmd_proxy_config import Section, render, render_diff, sections_of
from tulle.cli.config_diff import compare

_P = "type.googleapis.com/envoy.admin.v3."
CLUSTER: dict[str, Any] = {"name": "outbound|books.default", "type": "EDS",
           "connect_timeout": "5s",
           "transport_socket": {"name": "tls", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                        "UpstreamTlsContext"}}}
ENDPOINTS: dict[str, Any] = {"cluster_name": "outbound|books.default", "endpoints": [{
    "lb_endpoints": [
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 7001}}},
     "health_status": "HEALTHY"},
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 7002}}},
     "health_status": "UNHEALTHY"}]}]}
LISTENER: dict[str, Any] = {
    "name": "outbound",
    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15001}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "rds": {"route_config_name": "outbound|default"}}}]}]}
ROUTES: dict[str, Any] = {"name": "outbound|default", "virtual_hosts": [{
    "name": "books.default", "domains": ["books", "books.default"], "routes": [
        {"match": {"prefix": "/search"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "outbound|books.default", "weight": 90},
            {"name": "outbound|books-v2.default", "weight": 10}]}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "outbound|books.default"}}]}]}
SECRET: dict[str, Any] = {"name": "tulle-identity", "tls_certificate": {
    "certificate_chain": {"inline_string": "not a pem"},
    "private_key": {"inline_string": "-----BEGIN PRIVATE KEY-----secret"}}}
DUMP: dict[str, Any] = {"configs": [
    {"@type": _P + "BootstrapConfigDump", "bootstrap": {
        "node": {"id": "web-1.default", "cluster": "web.default"},
        "admin": {"address": {"pipe": {"path": "admin.sock", "mode": 384}}},
        "dynamic_resources": {"ads_config": {"grpc_services": [
            {"envoy_grpc": {"cluster_name": "tulle-xds"}}]}}}},
    {"@type": _P + "ClustersConfigDump", "dynamic_active_clusters": [{"cluster": CLUSTER}]},
    {"@type": _P + "EndpointsConfigDump",
     "dynamic_endpoint_configs": [{"endpoint_config": ENDPOINTS}]},
    {"@type": _P + "ListenersConfigDump",
     "dynamic_listeners": [{"name": "outbound", "active_state": {"listener": LISTENER}}]},
    {"@type": _P + "RoutesConfigDump", "dynamic_route_configs": [{"route_config": ROUTES}]},
    {"@type": _P + "SecretsConfigDump",
     "dynamic_active_secrets": [{"name": "tulle-identity", "secret": SECRET}]},
]}


def test_every_section_has_its_names() -> None:
    data = sections_of(DUMP, Section.ALL)
    text = render(data, Section.ALL)
    assert data["clusters"] == [{"name": "outbound|books.default", "type": "EDS", "healthy": 1,
                                 "endpoints": 2, "tls": True}]
    assert "1/2" in text
    assert data["listeners"][0]["filters"] == ["HCM"]
    assert data["listeners"][0]["routeConfigs"] == ["outbound|default"]
    assert "outbound|books.default:90, outbound|books-v2.default:10" in text
    assert "prefix=/search" in text
    assert "127.0.0.1:7002   UNHEALTHY" in text
    assert data["bootstrap"] == {"node": "web-1.default", "cluster": "web.default",
                                 "admin": "unix:admin.sock", "xdsCluster": "tulle-xds"}
    assert data["secrets"][0]["type"] == "tls_certificate"


def test_private_keys_never_shown() -> None:
    data = sections_of(DUMP, Section.ALL)
    assert "PRIVATE KEY" not in json.dumps(data) + render(data, Section.ALL)
    stripped = config_dump.strip_private_keys({"a": [{"private_key": "x", "b": 1}]})
    assert stripped == {"a": [{"b": 1}]}


def test_diff_of_identical_resources_ignores_envoys_defaults() -> None:
    actual = config_dump.dynamic_resources(DUMP)
    intended: dict[str, dict[str, Any]] = {
        "CDS": {CLUSTER["name"]: {k: v for k, v in CLUSTER.items() if k != "connect_timeout"}},
        "EDS": {ENDPOINTS["cluster_name"]: ENDPOINTS}, "LDS": {"outbound": LISTENER},
        "RDS": {"outbound|default": ROUTES},
        # Envoy redacts the key in its dump: it never counts as a difference.
        "SDS": {"tulle-identity": {**SECRET, "tls_certificate": {
            **SECRET["tls_certificate"], "private_key": {"filename": "/key.pem"}}}}}
    assert compare(intended, actual) == []
    assert "No differences" in render_diff([])


def test_diff_reports_missing_extra_and_different() -> None:
    intended: dict[str, dict[str, Any]] = {
        "CDS": {CLUSTER["name"]: {**CLUSTER, "type": "STATIC"},
                "outbound|gone.default": {"name": "outbound|gone.default"}},
        "LDS": {}}
    differences = compare(intended, {"CDS": {CLUSTER["name"]: CLUSTER},
                                     "LDS": {"outbound": LISTENER}})
    kinds = {(d.type, d.name): d.kind for d in differences}
    assert kinds == {("CDS", "outbound|books.default"): "different",
                     ("CDS", "outbound|gone.default"): "missing",
                     ("LDS", "outbound"): "extra"}
    different = next(d for d in differences if d.kind == "different")
    assert '-  "type": "STATIC"' in different.diff and '+  "type": "EDS"' in different.diff
    assert "different" in render_diff([d.to_dict() for d in differences])


def test_integral_floats_compare_equal() -> None:
    assert compare({"RDS": {"r": {"w": 1.0}}}, {"RDS": {"r": {"w": 1}}}) == []


INBOUND_CLUSTER: dict[str, Any] = {"name": "inbound|7100", "type": "STATIC", "load_assignment": {
    "cluster_name": "inbound|7100", "endpoints": [{"lb_endpoints": [{"endpoint": {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 7100}}},
        "health_status": "HEALTHY"}]}]}}
WITH_INBOUND: dict[str, Any] = {"configs": [
    {"@type": _P + "ClustersConfigDump", "static_clusters": [{"cluster": INBOUND_CLUSTER}]}]}


@pytest.mark.parametrize(("state", "health", "detail"), [
    ("ready", "HEALTHY", ""),
    ("not-ready", "NOT READY", "app not listening on 7100 (it stopped accepting"),
    ("starting", "NOT READY", "app not listening on 7100 (yet: the workload is starting"),
    ("draining", "DRAINING", "the workload is shutting down"),
])
def test_the_inbound_endpoint_shows_the_applications_readiness(
        state: str, health: str, detail: str) -> None:
    app = config_dump.AppReadiness(7100, state)
    data = sections_of(WITH_INBOUND, Section.ALL, app)
    [row] = data["endpoints"]
    assert (row["cluster"], row["health"], row["envoyHealth"]) == (
        "inbound|7100", health, "HEALTHY")
    assert row["detail"].startswith(detail)
    assert data["clusters"][0]["healthy"] == (1 if state == "ready" else 0)
    line = render(data, Section.ENDPOINTS).splitlines()[1]
    assert line.split(None, 2)[2] == (f"{health}: {row['detail']}" if detail else health)


def test_another_ports_endpoint_keeps_envoys_word() -> None:
    [row] = sections_of(WITH_INBOUND, Section.ENDPOINTS,
                        config_dump.AppReadiness(7200, "not-ready"))["endpoints"]
    assert (row["health"], row["detail"]) == ("HEALTHY", "")
