"""The bootstrap the control plane gives a sidecar: who it is and where ADS is; nothing else
listens (the agent adds Envoy's admin interface, on a Unix socket only it can open)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from tests.unit.xds.meshes import workload
from tulle.agent.identity import write_xds_client_secret, write_xds_roots
from tulle.identity import xdsclient
from tulle.xds.bootstrap import XdsTls, sidecar_bootstrap


def addresses(value: Any) -> list[Any]:
    if isinstance(value, dict):
        found = [value["socket_address"]] if "socket_address" in value else []
        return found + [a for v in value.values() for a in addresses(v)]
    if isinstance(value, list):
        return [a for v in value for a in addresses(v)]
    return []


def test_no_admin_port_only_the_xds_endpoint() -> None:
    bootstrap = sidecar_bootstrap(workload("web-1"), "127.0.0.1", 15710, "credential-123")
    assert "admin" not in bootstrap
    assert addresses(bootstrap) == [{"address": "127.0.0.1", "port_value": 15710}]
    assert bootstrap["node"]["id"] == "web-1.default"
    assert "Bearer credential-123" in json.dumps(bootstrap)  # Envoy's credential, for ADS


def test_other_replicas_are_lower_priorities_with_health_checks_to_move_by() -> None:
    alone = sidecar_bootstrap(workload("web-1"), "127.0.0.1", 15710, "c")
    assert "health_checks" not in alone["static_resources"]["clusters"][0]
    bootstrap = sidecar_bootstrap(workload("web-1"), "10.0.0.1", 15710, "c",
                                  other_xds=(("10.0.0.2", 15710), ("10.0.0.3", 15711)))
    xds = bootstrap["static_resources"]["clusters"][0]
    assert [(e["priority"], addresses(e)) for e in xds["load_assignment"]["endpoints"]] == [
        (0, [{"address": "10.0.0.1", "port_value": 15710}]),
        (1, [{"address": "10.0.0.2", "port_value": 15710}]),
        (2, [{"address": "10.0.0.3", "port_value": 15711}])]
    [check] = xds["health_checks"]
    assert "grpc_health_check" in check and check["no_traffic_interval"] == "1s"


def test_xds_over_tls_checks_the_control_plane_and_presents_the_workloads_certificate(
        tmp_path: Path) -> None:
    tls = XdsTls("spiffe://tulle.local/tulle/control-plane")
    bootstrap = sidecar_bootstrap(workload("web-1"), "10.0.0.1", 15710, "c", tls=tls)
    [xds] = bootstrap["static_resources"]["clusters"]
    context = xds["transport_socket"]["typed_config"]["common_tls_context"]
    combined = context["combined_validation_context"]
    assert combined["default_validation_context"]["match_typed_subject_alt_names"][0][
        "matcher"] == {"exact": tls.control_plane_id}
    # The roots: from the file the agent rewrites on each new bundle, not pinned here.
    roots = combined["validation_context_sds_secret_config"]
    assert roots["name"] == xdsclient.ROOTS_SECRET_NAME
    assert roots["sds_config"]["path_config_source"] == {
        "path": xdsclient.ROOTS_FILE, "watched_directory": {"path": xdsclient.DIRECTORY}}
    write_xds_roots(tmp_path, "BUNDLE PEM")
    [secret] = json.loads((tmp_path / xdsclient.ROOTS_FILE).read_text())["resources"]
    assert secret["name"] == xdsclient.ROOTS_SECRET_NAME
    assert secret["validation_context"] == {"trusted_ca": {"inline_string": "BUNDLE PEM"}}
    assert stat.S_IMODE((tmp_path / xdsclient.ROOTS_FILE).stat().st_mode) == 0o600
    # The client certificate: from the file the agent keeps, relative to Envoy's directory.
    [client] = context["tls_certificate_sds_secret_configs"]
    assert client["name"] == xdsclient.SECRET_NAME
    source = client["sds_config"]["path_config_source"]
    assert source == {"path": xdsclient.FILE, "watched_directory": {"path": xdsclient.DIRECTORY}}
    # ... which the agent writes as one SDS secret naming its current files.
    write_xds_client_secret(tmp_path, tmp_path / "cert-2.pem", tmp_path / "key-2.pem")
    written = tmp_path / xdsclient.FILE
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    [secret] = json.loads(written.read_text())["resources"]
    assert secret["name"] == xdsclient.SECRET_NAME and secret["@type"] == xdsclient.SECRET_TYPE
    assert secret["tls_certificate"] == {
        "certificate_chain": {"filename": str(tmp_path / "cert-2.pem")},
        "private_key": {"filename": str(tmp_path / "key-2.pem")}}
    assert sorted(p.name for p in written.parent.iterdir()) == ["roots.json", "secret.json"]


def test_plain_xds_on_loopback_presents_no_certificate() -> None:
    bootstrap = sidecar_bootstrap(workload("web-1"), "127.0.0.1", 15710, "c")
    assert "transport_socket" not in bootstrap["static_resources"]["clusters"][0]
