"""The registry and the analyzers keep their promises: codes unique and well formed, each
used by one analyzer and exercised by a table test, documented with a cause and a fix, and
each analyzer reads exactly what it declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.analysis.support import documents, fixture, node, traffic
from tests.unit.model.workloads import workload
from tulle.analysis.analyzers import ANALYZERS
from tulle.analysis.codes import CODES, Code
from tulle.analysis.engine import AnalysisContext, AnalysisInput, Analyzer
from tulle.analysis.run import parse_for_analysis
from tulle.telemetry.schema import SeriesKey

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "diagnostics"
TESTS = Path(__file__).resolve().parent


def test_codes_are_unique_and_well_formed() -> None:
    numbers = [c.code for c in CODES]
    assert len(set(numbers)) == len(numbers)
    assert len({c.title for c in CODES}) == len(CODES)
    for code in CODES:
        assert re.fullmatch(r"TUL\d{4}", code.code), code.code
        assert 1 <= int(code.code[3:]) < 1000, "TUL1000 and above belong to tulle diagnose"
        assert code.title and code.message and code.fix
    assert numbers == sorted(numbers)


def test_every_code_belongs_to_exactly_one_analyzer() -> None:
    owners = [code for analyzer in ANALYZERS for code in analyzer.codes]
    assert sorted(c.code for c in owners) == sorted(c.code for c in CODES)


def test_every_code_is_produced_by_a_table_test() -> None:
    text = "".join(p.read_text() for p in TESTS.glob("test_*analyzers.py"))
    missing = [c.code for c in CODES if f'"{c.code}"' not in text]
    assert not missing, f"no table test expects {missing}"


def test_analyzer_names_are_unique() -> None:
    names = [a.name for a in ANALYZERS]
    assert len(set(names)) == len(names)
    assert all(a.description and a.kinds for a in ANALYZERS)


@pytest.mark.parametrize("code", CODES, ids=[c.code for c in CODES])
def test_every_code_is_documented(code: Code) -> None:
    page = DOCS / f"{code.code}.md"
    assert page.is_file(), f"write {page.relative_to(ROOT)}"
    text = page.read_text()
    assert text.startswith(f"# {code.code}: {code.title}\n"), "title line"
    assert "\n## Cause\n" in text and "\n## Fix\n" in text
    assert f"Level: **{code.level}**" in text
    assert code.docs == f"docs/diagnostics/{code.code}.md"


def test_the_index_lists_every_analyzer_and_code() -> None:
    index = (DOCS / "analyzers.md").read_text()
    for analyzer in ANALYZERS:
        assert f"`{analyzer.name}`" in index, analyzer.name
    for code in CODES:
        assert f"[{code.code}]({code.code}.md)" in index, code.code


def _everything() -> AnalysisInput:
    """Every kind of input, so that each analyzer reaches every read it makes."""
    text = "---\n".join(fixture(name) for name in ("services", "weights", "retries",
                                                    "policy_conflicts"))
    text += "---\napiVersion: tulle.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\n"
    text += ("---\napiVersion: tulle.io/v1alpha1\nkind: TrafficPolicy\n"
             "metadata: {name: route-limit}\nspec:\n  targetRefs: [{kind: HTTPRoute, group: "
             "gateway.networking.k8s.io, name: twice}]\n  rateLimit: {requests: 1}\n")
    resources = parse_for_analysis(documents(text))
    nodes = (node("books-1", "books"), node("web-1", "web"))
    seen = traffic({("web-1.default", SeriesKey("out", "books.default")): {"rq2": 10}},
                   nodes=nodes)
    return AnalysisInput(resources, {}, (workload("books-1", "books"),), seen)


@pytest.mark.parametrize("analyzer", ANALYZERS, ids=[a.name for a in ANALYZERS])
def test_declared_inputs_are_the_inputs_read(analyzer: Analyzer) -> None:
    context = AnalysisContext(analyzer, _everything())
    analyzer.run(context)  # reading anything undeclared raises
    declared = {k.kind for k in analyzer.kinds} | {str(n) for n in analyzer.needs | analyzer.uses}
    assert context.read == declared
