"""Meta-tests of the check table: stable, unique ids; dependencies that run first; a docs
section for every check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tulle.checks import catalog
from tulle.checks.runner import Check

DOCS = Path(__file__).resolve().parents[3]
ALL = catalog.checks(proxy=True)


def test_ids_are_unique() -> None:
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids))


def test_dependencies_come_earlier_in_the_table() -> None:
    seen: set[str] = set()
    for check in ALL:
        assert set(check.needs) <= seen, (check.id, check.needs)
        seen.add(check.id)


def test_without_proxy_only_control_plane_groups_run() -> None:
    groups = {c.group for c in catalog.checks(proxy=False)}
    assert groups == {"control-plane", "store", "replicas", "hosts", "identity"}
    assert {c.group for c in ALL} == set(catalog.GROUP_TITLES)


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.id)
def test_every_check_has_a_deadline_a_hint_and_a_docs_section(check: Check[object]) -> None:
    assert 0 < check.timeout <= 30 and 0 <= check.retry_deadline <= 15
    assert check.hint and check.description
    page = DOCS / check.docs.partition("#")[0]
    assert f"\n## {check.id}\n" in page.read_text(), f"{page} has no section {check.id}"


def test_everything_after_the_api_checks_needs_the_token_accepted() -> None:
    local = {"cp-running", "cp-reachable", "cp-authenticated"}
    for check in ALL:
        if check.id not in local:
            assert "cp-authenticated" in check.needs, check.id
