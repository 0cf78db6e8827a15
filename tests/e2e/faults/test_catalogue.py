"""The fault catalogue (catalogue.py), each scenario in a mesh of its own with real Envoy.

A fault: `tulle diagnose` (the whole mesh) and `tulle diagnose SERVICE` must each rank the
expected finding first, with the expected subject, within a generous time. A healthy
scenario: neither may report a finding of severity error or critical. The time from the fault
to its naming is printed (`pytest -s`), never asserted; `python -m benchmarks --only
troubleshoot` turns it into figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.faults.catalogue import FAULTS, HEALTHY
from tests.e2e.faults.harness import Scenario, play

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(240)]


@pytest.mark.parametrize("scenario", FAULTS, ids=lambda s: s.name)
def test_the_cause_is_named_first(scenario: Scenario, tmp_path: Path) -> None:
    outcome = play(scenario, tmp_path)
    print(f"measured: {outcome.report()}")
    if not outcome.ok:
        pytest.fail(outcome.report(), pytrace=False)


@pytest.mark.parametrize("scenario", HEALTHY, ids=lambda s: s.name)
def test_a_healthy_mesh_raises_no_alarm(scenario: Scenario, tmp_path: Path) -> None:
    outcome = play(scenario, tmp_path)
    print(f"measured: {outcome.report()}")
    if not outcome.ok or outcome.mesh.failures or outcome.service.failures:
        pytest.fail(outcome.report(), pytrace=False)
