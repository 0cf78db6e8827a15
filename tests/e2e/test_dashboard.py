"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright) against
a running mesh with traffic: every page opens, its numbers are `tulle stat`'s, the topology
has the mesh's edges and turns a failing one red within an update, and nothing opens without
credentials. Screenshots go to artifacts/dashboard/ (see the README)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import chromium, login_link, shot
from tests.support.http import request
from tests.support.load import Load
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: all
    backendRefs: [{name: books}]
"""


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _http(mesh: Mesh, method: str, path: str, headers: dict[str, str] | None = None
          ) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", mesh.api_port, timeout=10)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _session(mesh: Mesh) -> str:
    response = _http(mesh, "GET", login_link(mesh).removeprefix(f"http://127.0.0.1:{mesh.api_port}"))
    assert response.status == 303, response.status
    cookie = response.getheader("Set-Cookie") or ""
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    return cookie.split(";", 1)[0]


def test_nothing_opens_without_credentials(mesh: Mesh) -> None:
    token = mesh.paths.token_file.read_text().strip()
    # A page without a session goes to the login page; the API answers 401.
    page = _http(mesh, "GET", "/ui/services")
    assert page.status == 303 and page.getheader("Location") == "/ui/login"
    assert _http(mesh, "GET", "/v1/telemetry/services").status == 401
    assert _http(mesh, "GET", "/ui/events").status == 303
    forged = {"Cookie": "tulle_ui=" + "A" * 43}
    assert _http(mesh, "GET", "/v1/telemetry/services", forged).status == 401
    assert _http(mesh, "GET", "/ui/services", forged).status == 303
    # Links are for token holders, and each works once.
    assert _http(mesh, "POST", "/v1/ui/links").status == 401
    assert _http(mesh, "GET", "/ui/login?code=wrong").status == 401
    link = login_link(mesh).removeprefix(f"http://127.0.0.1:{mesh.api_port}")
    assert _http(mesh, "GET", link).status == 303
    assert _http(mesh, "GET", link).status == 401, "a link works once"
    # The login page's token check: a wrong token opens nothing.
    assert _http(mesh, "POST", "/ui/session", {"Authorization": "Bearer wrong"}).status == 401
    right = _http(mesh, "POST", "/ui/session", {"Authorization": f"Bearer {token}"})
    assert right.status == 200 and "tulle_ui=" in (right.getheader("Set-Cookie") or "")
    # A session reads the dashboard's routes, and nothing else of the API.
    cookie = {"Cookie": _session(mesh)}
    assert _http(mesh, "GET", "/ui/services", cookie).status == 200
    assert _http(mesh, "GET", "/v1/telemetry/services", cookie).status == 200
    assert _http(mesh, "GET", "/v1/log", cookie).status == 401
    assert _http(mesh, "GET", "/v1/proxies/web-1.default/admin/config_dump", cookie).status \
        == 401
    assert _http(mesh, "POST", "/v1/rollouts/default/books/abort", cookie).status == 401
    assert _http(mesh, "GET", "/v1/identity/status", cookie).status == 401
    # The open routes (the login page, its script) authenticate nothing: the connection
    # stays a stranger's, which carries one request and is closed.
    for path in ("/ui/login", "/ui/static/login.js"):
        opened = _http(mesh, "GET", path)
        assert opened.status == 200 and opened.getheader("Connection") == "close", path
    assert _http(mesh, "GET", "/ui/services", cookie).getheader("Connection") != "close"
    # Logged out, the session is gone.
    assert _http(mesh, "POST", "/ui/logout", cookie).status == 303
    assert _http(mesh, "GET", "/v1/telemetry/services", cookie).status == 401


def _stat(mesh: Mesh, kind: str) -> dict[str, dict[str, Any]]:
    data = json.loads(mesh.cli("stat", kind, "--window", "15m", "-o", "json").stdout)
    return {f"{r['name']}.{r['namespace']}": r for r in data[kind]}


def _row(page: Any, key: str) -> dict[str, str]:
    """The cells of the table row for ``key``, by field."""
    return dict(page.evaluate("""(key) => {
        const row = document.querySelector(`tr[data-key="${key}"]`);
        if (!row) return {};
        return Object.fromEntries([...row.querySelectorAll("td[data-field]")]
            .map((td) => [td.dataset.field, td.textContent]));
    }""", key))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(text: str | None) -> float | None:
    return float(text.removesuffix(" ms")) if text and text.endswith(" ms") else None


def test_every_page_shows_the_mesh_and_a_failing_edge_turns_red(mesh: Mesh,
                                                                browser: Any) -> None:
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.cli("apply", "-f", "-", stdin=ROUTE)
    mesh.sync()
    for i in range(100):
        status = 503 if i % 10 == 0 else 200
        assert request(port, f"/?status={status}").status == status
    # Histograms reach the agent on Envoy's stats flush, after the counters.
    wait_for("tulle stat to count the 100 requests and their latency", lambda: (
        b := _stat(mesh, "services")["books.default"])["requests"] == 100 and
        b["latencyMs"]["p99"] is not None, 30)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # No internet needed: every request the pages make goes to the control plane.
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(login_link(mesh))
    assert page.url.endswith("/ui/topology"), page.url

    # Services: the numbers are `tulle stat`'s.
    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/services")

    def same_as_stat() -> tuple[dict[str, str], dict[str, Any]] | None:
        books = _stat(mesh, "services")["books.default"]
        row = _row(page, "books.default")
        seen.append((row, books["requests"], books["successRate"], books["latencyMs"]))
        shown = (row.get("requests"), row.get("success"), _ms(row.get("p99")))
        return (row, books) if shown == (str(books["requests"]), _pct(books["successRate"]),
                                         books["latencyMs"]["p99"]) else None
    seen: list[Any] = []
    try:
        row, _ = wait_for("the services page to show tulle stat's numbers", same_as_stat, 30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: last seen {seen[-1:]}") from None
    assert (row["requests"], row["success"]) == ("100", "90.00%"), row
    assert page.locator('tr[data-key="books.default"] svg.spark polyline').count() == 2
    shot(page, "services")

    workloads = _stat(mesh, "workloads")
    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/workloads")
    row = wait_for("the workloads page's books-1 row", lambda: (
        r := _row(page, "books-1.default")).get("requests") and r, 20)
    assert row["requests"] == str(workloads["books-1.default"]["requests"]) == "100", row
    shot(page, "workloads")

    for name, words in (("routes", "default/books"), ("proxies", "books-1.default"),
                        ("diagnose", ""), ("rollouts", "no Rollouts"),
                        ("history", "HTTPRoute default/books")):
        page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/{name}")
        text = wait_for(f"the {name} page", lambda: (
            t := page.inner_text("#content")) != "loading" and t, 20)
        assert words in text, (name, text)
        assert "cannot read the mesh" not in text, (name, text)
        shot(page, name)
    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/proxies")
    synced = wait_for("both proxies in the proxies page", lambda: (
        t := page.inner_text("#content")) and "web-1.default" in t and t, 20)
    assert synced.count("SYNCED") >= 2, synced

    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/service/default/books")
    text = wait_for("the service page", lambda: (
        t := page.inner_text("#content")) and "Instances" in t and t, 20)
    assert "books-1" in text and "default/books" in text and "revision" in text, text
    shot(page, "service")

    # History: the route's creation, as a diff.
    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/history")
    page.locator("details.change summary").first.click()
    assert '+   "kind": "HTTPRoute"' in page.inner_text("details.change >> nth=0")

    # The live tap: requests appear as they are made.
    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/tap")
    page.fill("#tap-target", "books")
    page.click("#tap-form button")
    wait_for("the tap to attach", lambda: "tapping books" in page.inner_text("#tap-status"), 30)
    for _ in range(5):
        assert request(port, "/tapped").status == 200
    wait_for("tapped requests in the page", lambda: "/tapped" in page.inner_text("#tap-rows"),
             20)
    shot(page, "tap")

    # The topology: web -> books over mTLS, green; then books fails, and the edge turns red
    # by the first update that can see it.
    page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/topology")
    edge = 'g.edge[data-from="web.default"][data-to="books.default"]'
    load = Load(port, rate=40, threads=2, path="/").start()
    try:
        wait_for("a green edge from web to books", lambda: page.locator(
            edge + ".ok").count() == 1 and "mTLS" in (page.text_content(edge) or ""), 30)
        shot(page, "topology")
        with EchoControl("books-1", mesh) as fail:
            fail("fail=500&every=1")

            def failing_in_stat() -> bool:
                edges = json.loads(mesh.cli("edges", "--window", "30s", "-o", "json").stdout)
                return any(e["source"]["service"] == "web" and
                           e["destination"].get("service") == "books" and
                           e["successRate"] is not None and e["successRate"] < 0.95
                           for e in edges["edges"])
            wait_for("tulle edges to see web -> books fail", failing_in_stat, 30)
            seen_at = int(page.evaluate("window.tulleUpdates"))
            red_at = wait_for("the edge to turn red", lambda: page.locator(
                edge + ".failing").count() == 1 and int(page.evaluate("window.tulleUpdates")),
                30)
            assert red_at <= seen_at + 2, (seen_at, red_at)
            shot(page, "topology-failing")
    finally:
        load.stop()
    page.close()
    here = f"http://127.0.0.1:{mesh.api_port}/"
    assert requested and all(url.startswith(here) for url in requested), \
        [u for u in requested if not u.startswith(here)]


class EchoControl:
    """Changes a workload's echo app (/control) and puts it back on exit."""

    def __init__(self, name: str, mesh: Mesh) -> None:
        self.port = next(w.app_port for w in mesh.workloads if w.name == name)

    def _send(self, query: str) -> None:
        assert request(self.port, f"/control?{query}").status == 200

    def __enter__(self) -> Any:
        return self._send

    def __exit__(self, *exc: object) -> None:
        self._send("reset=1")
