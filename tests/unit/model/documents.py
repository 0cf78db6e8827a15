"""Turn inline YAML into parsed resources or into the problems found, for table-driven tests."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import yaml

from tulle.errors import ConfigError, Problem
from tulle.model.parse import Document, parse_documents
from tulle.model.resource import Resource

# (field path, text the message contains, text the hint contains; "" when there is no hint)
Expected = tuple[str, str, str]


def documents(text: str, source: str = "t.yaml") -> list[Document]:
    """One Document per YAML document, tagged ``t.yaml#1``, ``t.yaml#2``, ..."""
    return [Document(f"{source}#{index}", body)
            for index, body in enumerate(yaml.safe_load_all(text), start=1)]


def parse(text: str) -> tuple[Resource, ...]:
    return parse_documents(documents(text))


def problems(text: str) -> tuple[Problem, ...]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.problems


def assert_problems(found: Sequence[Problem], expected: Sequence[Expected]) -> None:
    """Every problem, in order, matches one expectation; none missing, none extra."""
    rendered = "\n".join(p.render() for p in found)
    assert len(found) == len(expected), f"problems found:\n{rendered}"
    for problem, (field, message, hint) in zip(found, expected, strict=True):
        assert problem.field == field, rendered
        assert message in problem.message, rendered
        if hint:
            assert hint in problem.hint, rendered
        else:
            assert problem.hint == "", rendered


ROUTE_HEAD = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
"""


def route_yaml(spec: object) -> str:
    """An HTTPRoute shop/r with this spec, written as flow YAML (JSON is valid YAML)."""
    return ROUTE_HEAD + "spec: " + json.dumps(spec) + "\n"
