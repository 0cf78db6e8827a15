"""The bootstrap a sidecar's Envoy starts from: who it is, and where its control plane is.

Everything else arrives over ADS. The control plane builds it at registration, so the agent
needs no protobuf code and stays small. The agent adds the one section it owns: ``admin``, a
Unix socket in the workload's directory that only the agent can open (``tulle.agent.envoyadmin``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tulle.identity import xdsclient
from tulle.model.workload import Workload
from tulle.telemetry.schema import STATS_INCLUSION
from tulle.xds import names


@dataclass(frozen=True)
class XdsTls:
    """xDS over TLS (the control plane listens beyond loopback): the sidecar trusts only the
    mesh's roots (from the file its agent keeps current), and only a peer with the control
    plane's SPIFFE ID."""

    control_plane_id: str


def sidecar_bootstrap(workload: Workload, xds_host: str, xds_port: int,
                      xds_token: str, *, other_xds: tuple[tuple[str, int], ...] = (),
                      tls: XdsTls | None = None) -> dict[str, Any]:
    """``other_xds``: the other control-plane replicas, where the ADS stream goes when this
    one (first) is gone. ``tls``: how to check the control plane when xDS runs over TLS."""
    api_type = "DELTA_GRPC" if workload.xds_protocol == "delta" else "GRPC"
    failover: dict[str, Any] = {} if not other_xds else {
        # With other replicas to fall back on, a replica that does not answer gRPC's health
        # check (dead, or frozen: its port still accepts) is marked down within about 2 s,
        # and the ADS stream moves to the next priority.
        # (no_traffic_interval too: Envoy's default, 60 s, applies to this cluster.)
        "health_checks": [{"timeout": "1s", "interval": "1s", "no_traffic_interval": "1s",
                           "unhealthy_threshold": 2, "healthy_threshold": 1,
                           "grpc_health_check": {}}]}
    return {
        "node": {
            "id": workload.node_id,
            "cluster": f"{workload.service}.{workload.namespace}",
            "metadata": {
                "tulle.io/workload": workload.name,
                "tulle.io/namespace": workload.namespace,
                "tulle.io/service": workload.service,
            },
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{
                    "envoy_grpc": {
                        "cluster_name": names.XDS_CLUSTER,
                        # Reconnect fast when the control plane restarts; Envoy keeps serving
                        # its last config meanwhile.
                        "retry_policy": {"retry_back_off": {"base_interval": "0.1s",
                                                            "max_interval": "1s"}},
                    },
                    "initial_metadata": [{"key": "authorization",
                                          "value": f"Bearer {xds_token}"}],
                }],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [{
                "name": names.XDS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                **failover,
                **({} if tls is None else {"transport_socket": _tls_socket(tls)}),
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/"
                                 "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {
                            "connection_keepalive": {"interval": "15s", "timeout": "5s"},
                        }},
                    },
                },
                "load_assignment": {
                    "cluster_name": names.XDS_CLUSTER,
                    # This replica first (priority 0); the others only while it is down.
                    "endpoints": [
                        {"priority": priority, "lb_endpoints": [
                            {"endpoint": {"address": _address(host, port)}}]}
                        for priority, (host, port) in enumerate(
                            ((xds_host, xds_port), *other_xds))],
                },
            }],
        },
        # The cardinality guard: a sidecar keeps only the stats tulle reads, and creates a
        # cluster's traffic stats only once the cluster is used.
        "stats_config": {
            "stats_matcher": {"inclusion_list": {"patterns": [
                {"safe_regex": {"regex": pattern}} for pattern in STATS_INCLUSION]}},
        },
        "deferred_stat_options": {"enable_deferred_creation_stats": True},
        # Histograms are merged when the agent reads them, not on a timer nobody reads.
        "stats_flush_on_admin": True,
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            # Envoy's default overload protection warns at start without a limit.
            "overload.global_downstream_max_connections": 50000,
        }}]},
    }


def _tls_socket(tls: XdsTls) -> dict[str, Any]:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/"
                 "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            # The workload's own certificate: the control plane binds the stream to it. The
            # agent keeps the file current (tulle.identity.xdsclient); Envoy reloads it.
            "tls_certificate_sds_secret_configs": [{
                "name": xdsclient.SECRET_NAME,
                "sds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": {
                        "path": xdsclient.FILE,
                        "watched_directory": {"path": xdsclient.DIRECTORY}}}}],
            # The roots from the file the agent rewrites on every new bundle: pinned in the
            # bootstrap, they would refuse the control plane after a root rotation.
            "combined_validation_context": {
                "default_validation_context": {"match_typed_subject_alt_names": [{
                    "san_type": "URI", "matcher": {"exact": tls.control_plane_id}}]},
                "validation_context_sds_secret_config": {
                    "name": xdsclient.ROOTS_SECRET_NAME,
                    "sds_config": {
                        "resource_api_version": "V3",
                        "path_config_source": {
                            "path": xdsclient.ROOTS_FILE,
                            "watched_directory": {"path": xdsclient.DIRECTORY}}}},
            },
        },
    }}


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}
