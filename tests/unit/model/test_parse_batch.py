"""A batch is judged whole: every problem of every document at once, and duplicate names."""

from __future__ import annotations

import pytest

from tests.unit.model.documents import documents, parse, problems
from tulle.errors import ConfigError
from tulle.model.parse import Document, parse_documents

SERVICE = "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: %s}\n"


def services(*names: str) -> str:
    return "---\n".join(SERVICE % name for name in names)


# (case, YAML, expected (source, field, message) of each problem)
CASES: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    ("duplicate name", services("a", "b", "a"),
     [("t.yaml#3", "metadata.name", "duplicate name: t.yaml#1 already defines Service default/a")]),
    ("three of a kind: both later ones point at the first", services("a", "a", "a"),
     [("t.yaml#2", "metadata.name", "t.yaml#1 already defines Service default/a"),
      ("t.yaml#3", "metadata.name", "t.yaml#1 already defines Service default/a")]),
    ("duplicate given with explicit default namespace",
     services("a", "a, namespace: default"),
     [("t.yaml#2", "metadata.name", "duplicate name: t.yaml#1 already defines")]),
    ("an invalid document is not a duplicate of anything", services("a", "a, labels: x", "a"),
     [("t.yaml#2", "metadata.labels", "expected a mapping"),
      ("t.yaml#3", "metadata.name", "duplicate name: t.yaml#1")]),
    ("every document's problems, in document order", "---\n".join([
        "kind: Servce\n",
        SERVICE % "ok",
        SERVICE % "Bad",
        "42\n",
        SERVICE % "ok" + "spec: {protocol: udp}\n",
        SERVICE % "ok",
    ]), [("t.yaml#1", "kind", 'unknown kind "Servce"'),
         ("t.yaml#3", "metadata.name", '"Bad" is not a valid name'),
         ("t.yaml#4", "", "expected a mapping"),
         ("t.yaml#5", "spec.protocol", "must be one of"),
         ("t.yaml#6", "metadata.name", "duplicate name: t.yaml#2 already defines")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_batch_problems(text: str, expected: list[tuple[str, str, str]]) -> None:
    found = problems(text)
    rendered = "\n".join(p.render() for p in found)
    assert len(found) == len(expected), rendered
    for problem, (source, field, message) in zip(found, expected, strict=True):
        assert (problem.source, problem.field) == (source, field), rendered
        assert message in problem.message, rendered


def test_duplicate_is_found_even_when_sources_are_equal() -> None:
    # API clients may send documents without distinct sources.
    body = {"apiVersion": "tulle.io/v1alpha1", "kind": "Service", "metadata": {"name": "a"}}
    with pytest.raises(ConfigError) as caught:
        parse_documents([Document("request", body), Document("request", body)])
    (problem,) = caught.value.problems
    assert "duplicate name" in problem.message
    assert problem.resource == "Service default/a"
    assert problem.hint == "give each resource a unique name, or remove one of the two"


def test_summary_counts_the_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(services("A", "B"))
    assert caught.value.message == "2 problems found; nothing was applied"
    with pytest.raises(ConfigError) as caught:
        parse(services("A"))
    assert caught.value.message == "1 problem found; nothing was applied"


def test_valid_batch_keeps_document_order() -> None:
    resources = parse(services("c", "a", "b"))
    assert [r.meta.name for r in resources] == ["c", "a", "b"]


def test_empty_batch_is_empty() -> None:
    assert parse_documents([]) == ()
    assert documents("") == []
