"""Prometheus: real sidecars' and the control plane's /metrics pass `promtool check metrics`
and count known traffic right; the metrics token reads metrics and nothing else; `tulle
prometheus config` passes `promtool check config`, and a real Prometheus scrapes with it and
answers every dashboard query."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboards import DASHBOARDS, expressions, load, substitute
from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port
from tests.support.promtext import (
    INSTALL_HINT,
    Samples,
    check_config,
    check_metrics,
    parse,
    promtool,
    value,
)
from tests.support.scenarios import SEARCH_ROUTE
from tulle import __version__

pytestmark = pytest.mark.envoy

@pytest.fixture(autouse=True)
def _fast_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    # Agents report every 0.5 s, so the control plane counts reports quickly.
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def http_get(url: str, token: str | None = None, method: str = "GET"
             ) -> tuple[int, str, str]:
    """(status, content type, body) of a request to a metrics endpoint."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return (response.status, response.headers.get("Content-Type", ""),
                    response.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def metrics_token(mesh: Mesh) -> str:
    return mesh.paths.metrics_token_file.read_text().strip()


def agent_url(mesh: Mesh, name: str, path: str = "/metrics") -> str:
    workload = mesh.workload(name)
    return f"http://{workload['address']}:{workload['agentPort']}{path}"


def scrape(url: str, token: str) -> str:
    status, content_type, body = http_get(url, token)
    assert status == 200, f"{url}: HTTP {status}: {body[:300]}"
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    return body


def send(port: int, paths: list[str]) -> list[int]:
    with ThreadPoolExecutor(5) as pool:
        return [r.status for r in pool.map(lambda p: request(port, p, timeout=30), paths)]


def test_metrics_pass_promtool_and_count_known_traffic(mesh: Mesh) -> None:
    promtool()  # fail first, with the install hint, if it is missing
    mesh.run("books", name="books-1")
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)
    mesh.sync()
    # 20 requests, 5 of them 5xx: rule "search" gets 12 + 3 failing, the default rule 3 + 2.
    paths = (["/search?q=1"] * 12 + ["/search?status=500"] * 3 + ["/other"] * 3
             + ["/other?status=503"] * 2)
    statuses = send(port, paths)
    assert sorted(statuses) == [200] * 15 + [500] * 3 + [503] * 2
    token = metrics_token(mesh)

    def complete(name: str, family: str, **labels: str) -> tuple[str, Samples] | None:
        text = scrape(agent_url(mesh, name), token)
        samples = parse(text)
        # Histograms merge a read later than counters: wait for both.
        return (text, samples) if value(samples, family, **labels) == 20 else None

    books_text, books = wait_for("20 requests in books-1's histogram", lambda: complete(
        "books-1", "tulle_request_duration_seconds_count", direction="inbound"), timeout=20)
    web_text, web = wait_for("20 requests in web-1's route histograms", lambda: complete(
        "web-1", "tulle_route_request_duration_seconds_count", route="default/books"),
        timeout=20)

    inbound = {"direction": "inbound", "namespace": "default", "workload": "books-1",
               "service": "books", "tls": "mtls"}
    assert value(books, "tulle_requests_total", **inbound, code_class="5xx") == 5
    assert value(books, "tulle_requests_total", **inbound, code_class="2xx") == 15
    assert value(books, "tulle_requests_total", **inbound, code_class="4xx") == 0
    assert value(books, "tulle_request_duration_seconds_bucket", **inbound, le="+Inf") == 20
    assert value(books, "tulle_request_duration_seconds_sum", **inbound) >= 0

    outbound = {"direction": "outbound", "workload": "web-1", "dst_service": "books",
                "dst_namespace": "default"}
    assert value(web, "tulle_requests_total", **outbound, code_class="5xx") == 5
    assert value(web, "tulle_requests_total", **outbound, code_class="2xx") == 15
    assert value(web, "tulle_request_duration_seconds_count", **outbound) == 20
    assert value(web, "tulle_endpoints_healthy", **outbound) == 1
    search = {"workload": "web-1", "route": "default/books", "rule": "search"}
    assert value(web, "tulle_route_requests_total", **search, code_class="2xx") == 12
    assert value(web, "tulle_route_requests_total", **search, code_class="5xx") == 3
    assert value(web, "tulle_route_request_duration_seconds_count", **search) == 15
    default_rule = {"workload": "web-1", "route": "default/books", "rule": "1"}
    assert value(web, "tulle_route_requests_total", **default_rule, code_class="5xx") == 2
    assert value(web, "tulle_route_request_duration_seconds_count", **default_rule) == 5
    assert value(web, "tulle_proxy_xds_connected", workload="web-1") == 1

    def reported() -> tuple[str, Samples] | None:
        text = scrape(f"{mesh.api.url}/metrics", token)
        samples = parse(text)
        return (text, samples) if value(
            samples, "tulle_controlplane_telemetry_reports_total") > 0 else None
    cp_text, cp = wait_for("telemetry reports in the control plane", reported, timeout=10)

    for what, text in (("books-1", books_text), ("web-1", web_text),
                       ("the control plane", cp_text)):
        check_metrics(text, what)
    print(f"measured: /metrics sizes: books-1 {len(books)} samples, web-1 {len(web)}, "
          f"control plane {len(cp)}")

    status = mesh.status()
    assert value(cp, "tulle_controlplane_build_info", version=__version__) == 1
    assert value(cp, "tulle_controlplane_mesh_version") == status["meshVersion"]
    assert value(cp, "tulle_controlplane_proxies", state="SYNCED") == 2
    assert value(cp, "tulle_controlplane_proxies", state="NACKED") == 0
    assert value(cp, "tulle_controlplane_workloads", namespace="default", state="ready") == 2
    assert value(cp, "tulle_controlplane_resources", kind="HTTPRoute") == 1
    assert value(cp, "tulle_controlplane_resources", kind="TrafficPolicy") == 0
    assert value(cp, "tulle_controlplane_services") == status["services"]
    assert value(cp, "tulle_controlplane_xds_nacks_total") == 0
    for xds_type in ("CDS", "EDS", "LDS", "SRDS", "RDS", "SDS"):
        assert value(cp, "tulle_controlplane_xds_pushes_total", type=xds_type) >= 2
    assert value(cp, "tulle_controlplane_certificates_issued_total") >= 2
    identity = mesh.api.get("/v1/identity/status")
    now = time.time()
    issuer = value(cp, "tulle_controlplane_ca_expiry_timestamp_seconds", role="issuer",
                   id=identity["issuer"]["id"])
    root = value(cp, "tulle_controlplane_ca_expiry_timestamp_seconds", role="root",
                 id=identity["anchors"][0]["id"])
    assert now < issuer <= root
    assert issuer == pytest.approx(identity["issuer"]["notAfter"], abs=1)
    assert value(cp, "tulle_controlplane_telemetry_series") > 0


def test_the_metrics_token_reads_metrics_and_nothing_else(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    token = metrics_token(mesh)
    api_token = mesh.paths.token_file.read_text().strip()
    metrics = agent_url(mesh, "books-1")
    controlplane = mesh.api.url

    assert http_get(metrics, token)[0] == 200
    assert http_get(f"{controlplane}/metrics", token)[0] == 200
    assert http_get(f"{controlplane}/metrics", api_token)[0] == 200
    for url in (metrics, f"{controlplane}/metrics"):
        assert http_get(url)[0] == 401, url
        assert http_get(url, "wrong")[0] == 401, url
        assert http_get(url, token + "x")[0] == 401, url

    # Not Envoy's admin pages through the agent...
    for page in ("config_dump", "stats", "clusters"):
        assert http_get(agent_url(mesh, "books-1", f"/admin/{page}"), token)[0] == 401, page
    # ...and no part of the API, reads or writes.
    for method, path in (("GET", "/v1/status"), ("GET", "/v1/workloads"),
                         ("GET", "/v1/proxies/books-1.default/admin/config_dump"),
                         ("GET", "/v1/identity/status"), ("GET", "/metrics/"),
                         ("POST", "/v1/shutdown")):
        status, _, body = http_get(f"{controlplane}{path}", token, method)
        assert status == 401, f"{method} {path}: HTTP {status}: {body[:200]}"
    assert mesh.status()["workloads"] == 1  # still running


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Prometheus servers a test starts; stopped at the end."""
    servers: list[subprocess.Popen[bytes]] = []
    yield servers
    for server in servers:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_prometheus_config_passes_promtool_and_scrapes_every_target(
        mesh: Mesh, tmp_path: Path,
        prometheus_server: list[subprocess.Popen[bytes]]) -> None:
    promtool()
    mesh.run("books", name="books-1")
    web = mesh.run("web", name="web-1", app=False, namespace="shop")
    output = tmp_path / "prom"

    result = mesh.cli("prometheus", "config", "--output-dir", str(output))
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(result.stdout)
    print(check_config(config_file))
    config = yaml.safe_load(result.stdout)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"tulle-controlplane", "tulle-sidecars"}
    for job in jobs.values():
        assert job["authorization"] == {
            "type": "Bearer", "credentials_file": str(mesh.paths.metrics_token_file)}
    assert jobs["tulle-controlplane"]["static_configs"] == [
        {"targets": [f"127.0.0.1:{mesh.api_port}"]}]
    targets_file = output / "tulle-sidecars.json"
    assert jobs["tulle-sidecars"]["file_sd_configs"] == [{"files": [str(targets_file)]}]
    assert "2 sidecar targets" in result.stderr

    def targets_of(path: Path) -> dict[str, dict[str, Any]]:
        return {g["labels"]["workload"]: g for g in json.loads(path.read_text())}
    expected = {
        "books-1": {"targets": [f"127.0.0.1:{mesh.workload('books-1')['agentPort']}"],
                    "labels": {"namespace": "default", "workload": "books-1",
                               "service": "books"}},
        "web-1": {"targets": [f"127.0.0.1:{mesh.workload('web-1')['agentPort']}"],
                  "labels": {"namespace": "shop", "workload": "web-1", "service": "web"}},
    }
    assert targets_of(targets_file) == expected

    # A real Prometheus scrapes every target with that config.
    scrape_every_target(tmp_path, config, prometheus_server, expected_up=3)

    # Without --output-dir, the file goes to the state directory; a new run refreshes it.
    web.stop()
    wait_for("web-1 to leave", lambda: "web-1" not in {
        w["name"] for w in mesh.api.get("/v1/workloads")}, timeout=20)
    mesh.cli("prometheus", "config")
    default_file = mesh.state_dir / "prometheus" / "tulle-sidecars.json"
    assert set(targets_of(default_file)) == {"books-1"}
    mesh.cli("prometheus", "config", "--output-dir", str(output))
    assert set(targets_of(targets_file)) == {"books-1"}


def scrape_every_target(tmp_path: Path, config: dict[str, Any],
                        servers: list[subprocess.Popen[bytes]], expected_up: int) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    fast = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, **config}
    config_file = tmp_path / "prometheus-fast.yml"
    config_file.write_text(yaml.safe_dump(fast))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        servers.append(subprocess.Popen(
            [binary, f"--config.file={config_file}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))

    def all_up() -> list[dict[str, Any]] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets",
                                    timeout=5) as response:
            targets: list[dict[str, Any]] = json.load(response)["data"]["activeTargets"]
        healthy = [t for t in targets if t["health"] == "up"]
        return targets if len(targets) == expected_up == len(healthy) else None
    try:
        targets = wait_for("Prometheus to scrape every target", all_up, timeout=30,
                           interval=0.5)
    except AssertionError:
        raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:]) from None
    sidecars = {t["labels"]["workload"]: t["labels"] for t in targets
                if t["labels"]["job"] == "tulle-sidecars"}
    assert sidecars["web-1"]["namespace"] == "shop"

    def query(expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
        return result

    # honor_labels: the sidecar's own labels, no exported_* copies.
    series = wait_for("web-1's proxy metrics in Prometheus", lambda: query(
        'tulle_proxy_xds_connected{workload="web-1"}'), timeout=15, interval=0.5)
    assert series[0]["metric"]["namespace"] == "shop"
    assert not [k for k in series[0]["metric"] if k.startswith("exported_")], series
    assert wait_for("control-plane metrics in Prometheus", lambda: query(
        "tulle_controlplane_build_info"), timeout=15, interval=0.5)

    # Every dashboard query runs (Prometheus answers 400 to bad PromQL), and the variables'
    # queries find the mesh.
    variables = {"namespace": "default", "service": "books", "workload": "books-1",
                 "__rate_interval": "1m"}
    answered = 0
    for path in DASHBOARDS:
        for where, expr in expressions(load(path)):
            try:
                result = query(substitute(expr, variables))
            except urllib.error.HTTPError as exc:
                raise AssertionError(f"{path.name} {where}: {exc.read()[:300]!r}") from None
            assert result or not where.startswith("variable"), f"{path.name} {where}"
            answered += bool(result)
    print(f"measured: {answered} dashboard queries returned data")
