"""Reading resource files for `tulle apply -f`: files, directories and standard input.

Each document is tagged with where it starts (``books.yaml:12``) so errors point at the line.

Input is bounded before anything is built from it, so a hostile file fails fast, in little
memory, with an error naming it: at most ``MAX_FILE_BYTES`` per file (and ``MAX_TOTAL_BYTES``
in all, what the API accepts in one apply); and each document's node graph is measured before it
is constructed. Aliases (``*name``) share nodes, so nine nested lists of ten aliases (the
"billion laughs") compose into a few dozen nodes but expand to a billion when sent as JSON:
a document whose aliases would add more than ``MAX_ALIAS_EXPANSION`` (about bytes) once
expanded, that refers to itself, or that nests deeper than ``MAX_DEPTH`` is refused. Small
anchors and merge keys (``<<: *defaults``) stay as they were.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from tulle.cli.positions import Positions, field_positions
from tulle.errors import ConfigError, Problem, UsageError

SUFFIXES = (".yaml", ".yml", ".json")
_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024  # the API's limit for one request
MAX_ALIAS_EXPANSION = 1024 * 1024  # what aliases may add to one document, about in bytes
MAX_DEPTH = 100  # resources nest about 10 deep
_TOO_DEEP = f"the document nests more than {MAX_DEPTH} levels deep"
_TOO_DEEP_HINT = "resources nest a few levels deep: check the indentation and brackets"


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


def load_documents(targets: list[str], positions: dict[str, Positions] | None = None
                   ) -> list[dict[str, Any]]:
    """Every resource in ``targets``, each as ``{"source": "file:line", "manifest": ...}``.
    A ``List`` (what `tulle get -o yaml` prints for several resources) gives its items.
    ``positions``, when given, receives each document's field positions by its source."""
    documents: list[dict[str, Any]] = []
    problems: list[Problem] = []
    total = 0
    for target in targets:
        for name, text in _read(target):
            total += len(text)
            if total > MAX_TOTAL_BYTES:
                raise UsageError(f"{name}: the files to apply add up to more than "
                                 f"{_mib(MAX_TOTAL_BYTES)}, more than one apply may send",
                                 hint="apply them in several commands")
            try:
                documents.extend(_parse(name, text, positions))
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
        stdin = getattr(sys.stdin, "buffer", None)
        raw = stdin.read(MAX_FILE_BYTES + 1) if stdin is not None \
            else sys.stdin.read(MAX_FILE_BYTES + 1)
        return [("<stdin>", _decode("<stdin>", raw))]
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
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # never more, whatever the file's size
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    return _decode(str(path), raw)


def _decode(name: str, raw: bytes | str) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{name}: larger than {_mib(MAX_FILE_BYTES)}, the most tulle reads "
                         "from one file", hint="split it into several files")
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")  # YAML is UTF-8, whatever the locale
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: cannot read: {exc}") from exc


def _mib(count: int) -> str:
    return f"{count >> 20} MiB"


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node, message: str, hint: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message
        self.hint = hint


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_expansion(document: yaml.Node) -> None:
    """Refuse a document too large once its aliases are expanded, before building any of it.

    One pass over the distinct nodes (iterative: a deep document must not exhaust the stack).
    ``size`` is each node's weight once expanded: 1 per node, plus a scalar's length."""
    size: dict[int, int] = {}
    on_path: set[int] = set()  # the nodes being expanded: meeting one again is a cycle
    stack: list[tuple[yaml.Node, int, bool]] = [(document, 1, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            weight = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
            size[key] = weight + sum(size[id(child)] for child in _children(node))
            # What aliases add is at least this (see the module's docstring): stop early.
            if size[key] - len(size) > MAX_ALIAS_EXPANSION:
                raise _TooLarge(node, "aliases (*name) expand this document by more than "
                                f"{_mib(MAX_ALIAS_EXPANSION)} (a YAML alias bomb?)",
                                "write the repeated parts out, or use fewer and smaller "
                                "anchors (&name)")
            continue
        if key in size:
            continue
        if key in on_path:
            raise _TooLarge(node, "an alias (*name) refers to a node that contains it",
                            "resources cannot refer to themselves: remove the alias")
        if depth > MAX_DEPTH:
            raise _TooLarge(node, _TOO_DEEP, _TOO_DEEP_HINT)
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node)
                     if id(child) not in size)


def _is_list(body: Any) -> bool:
    return (isinstance(body, dict) and body.get("kind") == "List"
            and body.get("apiVersion", "v1") == "v1" and isinstance(body.get("items"), list))


def _items_node(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
                return list(value.value)
    return []


def _parse(name: str, text: str, positions: dict[str, Positions] | None = None
           ) -> list[dict[str, Any]]:
    loader = _ResourceLoader(text)
    out: list[dict[str, Any]] = []

    def add(node: yaml.Node, body: Any) -> None:
        source = f"{name}:{node.start_mark.line + 1}"
        out.append({"source": source, "manifest": body})
        if positions is not None:
            positions[source] = field_positions(node)

    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_expansion(node)
            body = loader.construct_document(node)
            if body is None:
                continue
            if _is_list(body):
                for item_node, item in zip(_items_node(node), body["items"], strict=False):
                    add(item_node, item)
            else:
                add(node, body)
    except _TooLarge as exc:
        mark = exc.node.start_mark
        raise ConfigError([Problem(source=f"{name}:{mark.line + 1}:{mark.column + 1}",
                                   message=exc.message, hint=exc.hint)]) from exc
    except RecursionError as exc:  # composing nests a frame per level: deep collections
        raise ConfigError([Problem(source=name, message=_TOO_DEEP,
                                   hint=_TOO_DEEP_HINT)]) from exc
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
