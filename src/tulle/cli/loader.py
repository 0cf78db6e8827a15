"""Reading resource files for `tulle apply -f`: files, directories and standard input.

Each document is tagged with where it starts (``books.yaml:12``) so errors point at the line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tulle.errors import ConfigError, Problem, UsageError

SUFFIXES = (".yaml", ".yml", ".json")


def load_documents(targets: list[str]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for target in targets:
        for name, text in _read(target):
            try:
                documents.extend(_parse(name, text))
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    if not documents:
        raise UsageError(f"no resources found in {', '.join(targets)}",
                         hint="give YAML or JSON files, a directory of them, or - for stdin")
    return documents


def _read(target: str) -> list[tuple[str, str]]:
    if target == "-":
        return [("<stdin>", sys.stdin.read())]
    path = Path(target)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        return [(str(p), _text(p)) for p in files]
    if not path.exists():
        raise UsageError(f"{target}: no such file or directory")
    return [(target, _text(path))]


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc


def _parse(name: str, text: str) -> list[dict[str, Any]]:
    loader = yaml.SafeLoader(text)
    out = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            body = loader.construct_document(node)
            if body is None:
                continue
            out.append({"source": f"{name}:{line}", "manifest": body})
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        message = f"malformed YAML: {exc.problem or exc.context}"
        if exc.context and exc.context_mark and exc.problem:
            message += (f" ({exc.context} that starts at line {exc.context_mark.line + 1}, "
                        f"column {exc.context_mark.column + 1})")
        raise ConfigError([Problem(
            source=where, message=message,
            hint="fix the syntax at that line (indentation, a missing ':' or quote)")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source=name, message=f"malformed YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return out
