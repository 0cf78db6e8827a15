"""`tulle prometheus rules`: the rules pass `promtool check rules`, and `promtool test rules`
proves they fire as the SRE workbook's alerts do: a fast burn pages, a slow burn files a
ticket only, an alert resolves soon after the burn stops, and a route rule's and a latency
objective read their own series."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promtext import promtool
from tulle.cli.slo_rules import FAST_ALERT, SLOW_ALERT, le_label, rule_file
from tulle.model.meta import ResourceKey
from tulle.model.slo import (
    LATENCY_BOUNDS_MS,
    LatencyObjective,
    MeshSlo,
    ServiceLevelObjectiveSpec,
    SloTargetRef,
    SuccessObjective,
    mesh_slos,
)
from tulle.telemetry.prometheus import _LATENCY_BOUNDS_S, _number
from tulle.telemetry.schema import LATENCY_BOUNDS_MS as SCHEMA_BOUNDS

KIND = "ServiceLevelObjective"
INBOUND = 'direction="inbound",namespace="shop",service="books",workload="books-1",tls="mtls"'
ROUTE = ('direction="outbound",namespace="shop",workload="web-1",service="web",'
         'dst_service="books",dst_namespace="shop",route="shop/books",rule="canary"')


def slo(name: str, target: SloTargetRef, window: str = "28d", success: float | None = 99.9,
        latency: tuple[str, float] | None = None) -> MeshSlo:
    spec = ServiceLevelObjectiveSpec(
        target, window, SuccessObjective(success) if success is not None else None,
        LatencyObjective(*latency) if latency else None)
    [resolved] = mesh_slos([(ResourceKey(KIND, "shop", name), spec)])
    return resolved


BOOKS = SloTargetRef("Service", "books")
CANARY = SloTargetRef("HTTPRoute", "books", section_name="canary")


def write_rules(tmp_path: Path, *slos: MeshSlo) -> tuple[Path, dict[str, Any]]:
    rules = rule_file(slos)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path, rules


def annotations(rules: dict[str, Any], alert: str, slo_name: str, sli: str) -> dict[str, str]:
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert and rule["labels"]["slo"] == slo_name and \
                    rule["labels"]["sli"] == sli:
                return dict(rule["annotations"])
    raise AssertionError(f"no {alert} for {slo_name}/{sli}")


def fired(rules: dict[str, Any], alert: str, slo_name: str, sli: str, severity: str
          ) -> list[dict[str, Any]]:
    return [{"exp_labels": {"slo": slo_name, "namespace": "shop", "sli": sli,
                            "severity": severity},
             "exp_annotations": annotations(rules, alert, slo_name, sli)}]


def run_tests(tmp_path: Path, rules_path: Path, tests: list[dict[str, Any]]) -> None:
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [rules_path.name],
                                         "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True,
                            text=True, timeout=120, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def requests(labels: str, good_per_min: int, bad_per_min: int, minutes: int,
             bad_class: str = "5xx") -> list[dict[str, str]]:
    return [{"series": f'tulle_requests_total{{{labels},code_class="2xx"}}',
             "values": f"0+{good_per_min}x{minutes}"},
            {"series": f'tulle_requests_total{{{labels},code_class="{bad_class}"}}',
             "values": f"0+{bad_per_min}x{minutes}"}]


def test_the_rules_pass_promtool_check(tmp_path: Path) -> None:
    path, rules = write_rules(tmp_path, slo("books", BOOKS, latency=("300ms", 99)),
                              slo("canary", CANARY, window="30d", success=95),
                              slo("loose", BOOKS, success=90))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [g["name"] for g in rules["groups"]] == [
        "tulle-slo-shop-books-success", "tulle-slo-shop-books-latency",
        "tulle-slo-shop-canary-success", "tulle-slo-shop-loose-success"]


def test_a_fast_burn_pages_and_a_healthy_service_does_not(tmp_path: Path) -> None:
    path, rules = write_rules(tmp_path, slo("books", BOOKS))
    run_tests(tmp_path, path, [
        # 9 % of requests fail: 90 times the 0.1 % budget, which a 28-day window pages at
        # 13.44 over an hour.
        {"interval": "1m", "input_series": requests(INBOUND, 600, 60, 120),
         "alert_rule_test": [
             {"eval_time": "70m", "alertname": FAST_ALERT,
              "exp_alerts": fired(rules, FAST_ALERT, "books", "success", "page")}]},
        # 0.05 % fail: within the objective, nothing fires.
        {"interval": "1m", "input_series": requests(INBOUND, 19990, 10, 400),
         "alert_rule_test": [
             {"eval_time": "6h", "alertname": FAST_ALERT, "exp_alerts": []},
             {"eval_time": "6h", "alertname": SLOW_ALERT, "exp_alerts": []}]},
    ])


def test_a_slow_burn_files_a_ticket_without_paging(tmp_path: Path) -> None:
    path, rules = write_rules(tmp_path, slo("books", BOOKS))
    # 0.5 % fail: a burn of 5, under the page thresholds (13.44 over 1 h, 5.6 over 6 h) and
    # over the ticket's (2.8 over a day, confirmed over 2 h).
    run_tests(tmp_path, path, [
        {"interval": "1m", "input_series": requests(INBOUND, 995, 5, 480),
         "alert_rule_test": [
             {"eval_time": "7h", "alertname": FAST_ALERT, "exp_alerts": []},
             {"eval_time": "7h", "alertname": SLOW_ALERT,
              "exp_alerts": fired(rules, SLOW_ALERT, "books", "success", "ticket")}]},
    ])


def test_a_page_resolves_soon_after_the_burn_stops(tmp_path: Path) -> None:
    path, rules = write_rules(tmp_path, slo("books", BOOKS))
    # Failing for 90 minutes, then none. The hour's ratio stays high for an hour, but its
    # 5-minute confirmation drops at once; the 6-hour pair's 30-minute one within 30 minutes.
    series = [{"series": f'tulle_requests_total{{{INBOUND},code_class="2xx"}}',
               "values": "0+600x180"},
              {"series": f'tulle_requests_total{{{INBOUND},code_class="5xx"}}',
               "values": "0+60x90 5400+0x90"}]
    run_tests(tmp_path, path, [
        {"interval": "1m", "input_series": series,
         "alert_rule_test": [
             {"eval_time": "85m", "alertname": FAST_ALERT,
              "exp_alerts": fired(rules, FAST_ALERT, "books", "success", "page")},
             {"eval_time": "125m", "alertname": FAST_ALERT, "exp_alerts": []}]},
    ])


def test_a_route_rules_objective_reads_the_callers_route_series(tmp_path: Path) -> None:
    path, rules = write_rules(tmp_path, slo("canary", CANARY, success=99))
    other_rule = ROUTE.replace('rule="canary"', 'rule="0"')
    series = [{"series": f'tulle_route_requests_total{{{ROUTE},code_class="2xx"}}',
               "values": "0+90x120"},
              {"series": f'tulle_route_requests_total{{{ROUTE},code_class="5xx"}}',
               "values": "0+10x120"},
              # The route's other rule fails too; it is not the objective's.
              {"series": f'tulle_route_requests_total{{{other_rule},code_class="5xx"}}',
               "values": "0+1000x120"}]
    run_tests(tmp_path, path, [
        {"interval": "1m", "input_series": series,
         "promql_expr_test": [
             {"expr": 'round(tulle_slo:bad_ratio:rate1h{slo="canary"}, 0.0001)',
              "eval_time": "100m",
              "exp_samples": [{"labels": '{slo="canary",namespace="shop",sli="success"}',
                               "value": 0.1}]}],
         "alert_rule_test": [
             {"eval_time": "100m", "alertname": FAST_ALERT,
              "exp_alerts": fired(rules, FAST_ALERT, "canary", "success", "page")}]},
    ])


def test_a_latency_objective_counts_requests_over_the_threshold(tmp_path: Path) -> None:
    path, rules = write_rules(tmp_path, slo("books", BOOKS, success=None,
                                            latency=("300ms", 99)))
    bucket = f"tulle_request_duration_seconds_bucket{{{INBOUND}"
    # 100 a minute, 80 within 300 ms: 20 % slow, 20 times the 1 % budget.
    series = [{"series": f'{bucket},le="0.2"}}', "values": "0+50x120"},
              {"series": f'{bucket},le="0.3"}}', "values": "0+80x120"},
              {"series": f'{bucket},le="+Inf"}}', "values": "0+100x120"},
              {"series": f"tulle_request_duration_seconds_count{{{INBOUND}}}",
               "values": "0+100x120"}]
    run_tests(tmp_path, path, [
        {"interval": "1m", "input_series": series,
         "promql_expr_test": [
             {"expr": 'round(tulle_slo:bad_ratio:rate1h{slo="books"}, 0.0001)',
              "eval_time": "100m",
              "exp_samples": [{"labels": '{slo="books",namespace="shop",sli="latency"}',
                               "value": 0.2}]}],
         "alert_rule_test": [
             {"eval_time": "100m", "alertname": FAST_ALERT,
              "exp_alerts": fired(rules, FAST_ALERT, "books", "latency", "page")}]},
    ])


def test_an_objective_too_loose_to_page_pages_only_when_everything_fails() -> None:
    [group] = rule_file([slo("loose", BOOKS, success=90)])["groups"]
    fast = next(r for r in group["rules"] if r.get("alert") == FAST_ALERT)
    # 13.44 x 10 % > 1: no ratio exceeds it, so the hour's alert is "every request failed".
    assert "rate1h" in fast["expr"] and ">= 1 and" in fast["expr"], fast["expr"]


@pytest.mark.parametrize("bound_s", _LATENCY_BOUNDS_S)
def test_latency_thresholds_match_the_sidecars_le_labels(bound_s: float) -> None:
    assert le_label(bound_s * 1000) == _number(bound_s)


def test_the_models_bounds_are_the_histograms() -> None:
    assert LATENCY_BOUNDS_MS == SCHEMA_BOUNDS
