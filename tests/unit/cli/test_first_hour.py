"""The CLI as a kubectl user expects it: errors at the field's line, Lists that apply, global
options after the subcommand, `--version`, and help without type placeholders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tulle.cli.loader import load_documents
from tulle.cli.main import hoist_global_options
from tulle.cli.positions import Positions, locate
from tulle.errors import Problem
from tulle.model.parse import _number_hint

ROUTE = """\
# a route
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r1
spec:
  parentRefs: [{name: books}]
  rules:
  - matches:
    - path: {type: Prefix, value: /a}
    backendRefs:
    - name: books
      weight: -1
"""


def _load(tmp_path: Path, text: str) -> tuple[list[dict[str, object]], dict[str, Positions]]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    positions: dict[str, Positions] = {}
    return load_documents([str(path)], positions), positions


# (field the control plane names, the line and column the CLI must give)
FIELDS = [
    ("spec.rules[0].backendRefs[0].weight", (13, 7)),
    ("spec.rules[0].matches[0].path.type", (10, 14)),
    ("spec.rules[0].backendRefs[0]", (12, 7)),
    ("kind", (3, 1)),
    # missing fields are placed at the nearest written parent
    ("spec.rules[0].backendRefs[0].port", (12, 7)),
    ("spec.hostnames", (6, 1)),
]


@pytest.mark.parametrize(("field", "where"), FIELDS, ids=[f[0] for f in FIELDS])
def test_problems_point_at_the_field(tmp_path: Path, field: str,
                                     where: tuple[int, int]) -> None:
    documents, positions = _load(tmp_path, ROUTE)
    source = str(documents[0]["source"])
    assert source.endswith(":2")  # the document starts after the comment
    (located,) = locate([Problem("bad", source=source, field=field)], positions)
    assert located.source == f"{tmp_path / 'r.yaml'}:{where[0]}:{where[1]}"


def test_problems_without_a_known_source_or_field_stay_as_they_are(tmp_path: Path) -> None:
    _, positions = _load(tmp_path, ROUTE)
    problems = [Problem("x", source="elsewhere.yaml:1", field="spec"),
                Problem("y", source=f"{tmp_path / 'r.yaml'}:2")]
    assert locate(problems, positions) == problems


def test_a_list_applies_as_its_items(tmp_path: Path) -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: tulle.io/v1alpha1
  kind: Service
  metadata: {name: a}
- apiVersion: tulle.io/v1alpha1
  kind: Service
  metadata:
    name: b
"""
    documents, positions = _load(tmp_path, text)
    path = tmp_path / "r.yaml"
    assert [(d["source"], d["manifest"]["metadata"]) for d in documents] == [  # type: ignore[index]
        (f"{path}:4", {"name": "a"}), (f"{path}:7", {"name": "b"})]
    assert positions[f"{path}:7"]["metadata.name"] == (10, 5)


def test_a_list_of_another_api_is_not_unpacked(tmp_path: Path) -> None:
    documents, _ = _load(tmp_path, "apiVersion: example.com/v9\nkind: List\nitems: [{a: 1}]\n")
    assert documents[0]["manifest"] == {"apiVersion": "example.com/v9", "kind": "List",
                                        "items": [{"a": 1}]}


HOIST = [
    (["get", "services", "--state-dir", "X"], ["--state-dir", "X", "get", "services"]),
    (["get", "--state-dir=X", "services"], ["--state-dir=X", "get", "services"]),
    (["--state-dir", "X", "get"], ["--state-dir", "X", "get"]),
    (["run", "--service", "c", "--", "cmd", "--state-dir", "Y"],
     ["run", "--service", "c", "--", "cmd", "--state-dir", "Y"]),
    (["run", "--state-dir", "X", "--", "cmd", "--state-dir", "Y"],
     ["--state-dir", "X", "run", "--", "cmd", "--state-dir", "Y"]),
]


@pytest.mark.parametrize(("argv", "expected"), HOIST)
def test_global_options_may_follow_the_subcommand(argv: list[str],
                                                  expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


@pytest.mark.parametrize(("kind", "value", "hint"), [
    ("int_parsing", "80", "write it without quotes: 80"),
    ("int_parsing", "eighty", "write a number, e.g. 80, without quotes"),
    ("int_parsing", "1e6", "write it as a whole number: 1000000"),
    ("float_parsing", "0.5", "write it without quotes: 0.5"),
    ("int_type", 8.5, ""),
    ("string_type", "x", ""),
])
def test_a_number_written_as_a_string_gets_a_hint(kind: str, value: object, hint: str) -> None:
    assert _number_hint(kind, value) == hint


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tulle.cli", *args], capture_output=True,
                          text=True, check=False, timeout=60)


def test_version_flag() -> None:
    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("tulle "), result


@pytest.mark.parametrize("command", [("stat",), ("apply",), ("run",), ("describe", "svc")])
def test_help_has_no_type_placeholders(command: tuple[str, ...]) -> None:
    result = _cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for placeholder in ("<bool>", "<str>", "<int>", "<list"):
        assert placeholder not in result.stdout, result.stdout
