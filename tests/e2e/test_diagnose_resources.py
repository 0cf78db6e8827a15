"""`tulle diagnose` and `tulle check` on a sidecar whose stats explode, with real Envoy.

Sidecars create a called cluster's traffic stats on first use (deferred creation), so a caller
that calls many services carries many more stats than its peers. Here web-1 calls 120 subsets
of books, each its own cluster; books-1 and api-1 call nothing.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_diagnose_dataplane import check_flags, first_finding
from tests.support.mesh import Mesh, wait_for

pytestmark = pytest.mark.envoy

SUBSETS = 120


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def _subsets() -> str:
    return "\n---\n".join(
        "apiVersion: tulle.io/v1alpha1\nkind: Service\n"
        f"metadata: {{name: books-{i}}}\nspec: {{protocol: http, selector: {{service: books}}}}"
        for i in range(SUBSETS))


def _stats(mesh: Mesh) -> dict[str, int]:
    rows = mesh.api.get("/v1/telemetry/workloads", {"window": 60})["workloads"]
    return {r["name"]: r["proxy"]["stats"] for r in rows if r.get("proxy", {}).get("stats")}


def test_a_stats_explosion_names_the_sidecar(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.run("api", name="api-1")
    web = mesh.run("web", name="web-1")
    mesh.cli("apply", "-f", "-", stdin=_subsets())
    mesh.wait_endpoints("web-1", f"books-{SUBSETS - 1}", {"books-1"})
    mesh.sync()
    def all_three() -> dict[str, int] | None:
        # Each new cluster brings a few stats to every sidecar (its membership gauges):
        # wait for reports taken after the subsets arrived.
        stats = _stats(mesh)
        return stats if len(stats) == 3 and min(stats.values()) > SUBSETS else None

    before = wait_for("every sidecar's stats count with the subsets", all_three)
    for i in range(SUBSETS):
        assert mesh.call(web, f"http://books-{i}/")["status"] == 200

    def grown() -> dict[str, int] | None:
        now = _stats(mesh)
        return now if now.get("web-1", 0) > before["web-1"] + 2000 else None

    after = wait_for("web-1's stats to grow", grown)
    assert after["books-1"] < before["books-1"] + 200  # its peers did not grow

    finding = first_finding(mesh, "TUL1064")
    assert finding["subject"] == "proxy/web-1.default", json.dumps(finding, indent=1)
    assert any("web-1.default" in line and "stats" in line for line in finding["evidence"])
    assert finding["fix"]
    check_flags(mesh, "web-1")
