"""Reading resource files for `tulle apply -f`: files, directories and standard input.

Each document is tagged with where it starts (``books.yaml:12``) so errors point at the line.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from tulle.errors import ConfigError, Problem, UsageError

SUFFIXES = (".yaml", ".yml", ".json")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _ResourceLoader(yaml.SafeLoader):
    """YAML as resources need it: unique keys, and values that JSON can carry to the API."""

    # Dates stay the strings they were written as (JSON has no dates). Binary and sets have no
    # JSON form, so they are refused like unknown tags instead of failing when sent to the API.
    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **yaml.SafeLoader.yaml_constructors,
        "tag:yaml.org,2002:timestamp": yaml.SafeLoader.construct_yaml_str,
        "tag:yaml.org,2002:binary": yaml.SafeLoader.construct_undefined,
        "tag:yaml.org,2002:set": yaml.SafeLoader.construct_undefined,
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False
                          ) -> dict[Hashable, Any]:
        # PyYAML silently keeps the last of two equal keys, so a second `rules:` would quietly
        # replace the first. The YAML spec forbids duplicates; so do kubectl and tulle.
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'found duplicate key "{key}" (first defined at line '
                    f"{seen[key].line + 1}); keep only one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


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
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        return [(str(p), _text(p)) for p in files]
    if not path.exists():
        raise UsageError(f"{target}: no such file or directory")
    return [(target, _text(path))]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")  # YAML is UTF-8, whatever the locale
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc


def _parse(name: str, text: str) -> list[dict[str, Any]]:
    loader = _ResourceLoader(text)
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
        syntax = isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError)
        hint = "fix the syntax at that line (indentation, a missing ':' or quote)" if syntax else ""
        raise ConfigError([Problem(source=where, message=message, hint=hint)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source=name, message=f"malformed YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return out
