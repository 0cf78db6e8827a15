"""ServiceLevelObjectives against real sidecars: `tulle slo` counts what `tulle stat` and
`tulle routes` count, diagnose's TUL1032 names the burn and where it comes from, the rules made
from the running mesh pass promtool, and a bad SLO is refused whole."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.promtext import promtool

pytestmark = pytest.mark.envoy

MESH = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: slow
    matches: [{path: {type: PathPrefix, value: /slow}}]
    backendRefs: [{name: books}]
  - name: rest
    backendRefs: [{name: books}]
---
apiVersion: tulle.io/v1alpha1
kind: ServiceLevelObjective
metadata: {name: books}
spec:
  targetRef: {kind: Service, name: books}
  success: {objective: 99.9}
  latency: {threshold: 300ms, objective: 99}
---
apiVersion: tulle.io/v1alpha1
kind: ServiceLevelObjective
metadata: {name: books-slow}
spec:
  targetRef: {kind: HTTPRoute, name: books, sectionName: slow}
  success: {objective: 99}
"""

BAD = """\
apiVersion: tulle.io/v1alpha1
kind: ServiceLevelObjective
metadata: {name: fine}
spec:
  targetRef: {kind: Service, name: books}
  success: {objective: 99}
---
apiVersion: tulle.io/v1alpha1
kind: ServiceLevelObjective
metadata: {name: typo}
spec:
  targetRef: {kind: Service, name: books}
  latency: {threshold: 250ms, objective: 99}
"""


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def slos(mesh: Mesh) -> dict[tuple[str, str], dict[str, Any]]:
    data = json.loads(mesh.cli("slo", "-o", "json").stdout)
    return {(row["name"], row["sli"]): row for row in data["slos"]}


def test_slos_count_what_the_sidecars_count_and_a_fast_burn_is_named(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.run("web", name="web-1")
    port = int(mesh.workload("web-1")["outboundPort"])
    mesh.cli("apply", "-f", "-", stdin=MESH)
    mesh.sync()
    assert {row["verdict"] for row in slos(mesh).values()} == {"no traffic"}

    sent = [("/ok", 200)] * 60 + [("/ok?status=503", 503)] * 12 + \
        [("/slow?delay=400", 200)] * 10 + [("/slow/x?status=500", 500)] * 5
    for path, status in sent:
        assert request(port, path, headers={"Host": "books"}).status == status, path

    def counted() -> dict[tuple[str, str], dict[str, Any]] | None:
        rows = slos(mesh)
        # Histograms reach the agent on Envoy's stats flush, after the counters.
        done = rows[("books", "success")]["requests"] == len(sent) and \
            rows[("books", "latency")]["requests"] == len(sent) and \
            rows[("books-slow", "success")]["requests"] == 15
        return rows if done else None
    rows = wait_for("the requests in tulle slo", counted, timeout=30)

    # The Service's success: what its instance answered, as `tulle stat` counts it.
    stat = json.loads(mesh.cli("stat", "services", "books", "-o", "json").stdout)
    [books] = [r for r in stat["services"] if r["name"] == "books"]
    success = rows[("books", "success")]
    assert books["seenBy"] == "instances", books
    assert (success["requests"], success["bad"]) == (books["requests"], books["codes"]["5xx"])
    assert (success["requests"], success["bad"]) == (87, 17)
    assert success["actual"] == round(100 * 70 / 87, 4)
    assert success["burnRate"] == round(17 / 87 / 0.001, 3)
    assert success["verdict"] == "burning fast"
    assert success["burnedBy"] == [{"proxy": "books-1.default", "bad": 17, "requests": 87}]
    # Latency: the ten answered after 400 ms are over 300 ms (others may be, on a busy host).
    slow = rows[("books", "latency")]
    assert slow["requests"] == 87 and 10 <= slow["bad"] <= 87, slow
    # The route rule's: the callers' route series for that rule, as `tulle routes` shows.
    routes = json.loads(mesh.cli("routes", "books", "-o", "json").stdout)["routes"]
    [rule] = [r for r in routes if r["rule"] == "slow"]
    on_rule = rows[("books-slow", "success")]
    assert (on_rule["requests"], on_rule["bad"]) == (rule["requests"], 5), (on_rule, rule)
    assert on_rule["target"] == "httproute/books#slow"
    assert on_rule["burnedBy"] == [{"proxy": "web-1.default", "bad": 5, "requests": 15}]

    table = mesh.cli("slo", "-o", "wide").stdout
    assert "burning fast" in table and "books-1.default (17)" in table, table
    assert "tulle prometheus rules" in table, table

    # Diagnose names both burns, the instance and the rule.
    result = mesh.cli("diagnose", "-o", "json", check=False)
    report = json.loads(result.stdout)
    found = {f["subject"]: f for f in report["findings"] if f["code"] == "TUL1032"}
    assert set(found) == {"servicelevelobjective/books.default",
                          "servicelevelobjective/books-slow.default"}, report["findings"]
    evidence = "\n".join(found["servicelevelobjective/books.default"]["evidence"])
    assert "instance books-1.default: 17 of the 17 bad requests" in evidence, evidence
    assert "route rule default/books#rest: 12 of its 72 requests bad" in evidence, evidence
    assert "caller web-1.default: 5 of the 5" in \
        "\n".join(found["servicelevelobjective/books-slow.default"]["evidence"])

    # The rules made from the running mesh pass promtool, one group per indicator.
    rules_file = mesh.root / "slo-rules.yaml"
    rules_file.write_text(mesh.cli("prometheus", "rules").stdout)
    checked = subprocess.run([promtool(), "check", "rules", str(rules_file)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 36 rules found" in checked.stdout, checked.stdout


def test_a_bad_slo_is_refused_whole_with_the_field_and_the_fix(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    manifest = mesh.root / "slos.yaml"
    manifest.write_text(BAD)
    result = mesh.cli("apply", "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert "slos.yaml" in result.stderr and "ServiceLevelObjective default/typo" in \
        result.stderr and "spec.latency.threshold" in result.stderr, result.stderr
    assert "use 200ms or 300ms" in result.stderr, result.stderr
    # Nothing was applied, not even the good one.
    assert json.loads(mesh.cli("get", "slo", "-o", "json").stdout)["items"] == []
    missing = mesh.cli("slo", "fine", check=False)
    assert missing.returncode == 1 and "no ServiceLevelObjective fine" in missing.stderr
