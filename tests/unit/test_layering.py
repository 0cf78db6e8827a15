"""The layering written in docs/development.md holds: each package imports only what its row of
the table allows, no two modules import each other in a circle, and inside the control plane
the services know nothing of HTTP or of the ControlPlane object.

Imports are read from the source (an AST walk), wherever they are: at module level, inside
functions, under ``TYPE_CHECKING``. A lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "tulle"
DOCS = ROOT / "docs" / "development.md"
TOP_MODULES = {"errors", "settings", "security", "local", "client", "humanize"}  # tulle/X.py


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, "tulle.controlplane.app"
    target: str  # what it names: "tulle.xds.server", or "aiohttp.web"
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports() -> tuple[Import, ...]:
    out = []
    for path in sorted(SOURCE.rglob("*.py")):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [Import(name, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.append(Import(name, node.module, node.lineno))
                # `from tulle.x import y` may name a module y: count it too.
                out += [Import(name, f"{node.module}.{alias.name}", node.lineno)
                        for alias in node.names]
    return tuple(out)


def package_of(module: str) -> str:
    """``tulle.xds.server`` -> ``xds``; ``tulle.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tulle"


@cache
def allowed() -> dict[str, frozenset[str]]:
    """The table under "## Layering" in docs/development.md (``errors`` is allowed
    everywhere, and left out of it)."""
    text = DOCS.read_text()
    section = text[text.index("## Layering"):]
    table: dict[str, frozenset[str]] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| ([a-z]+) \|([^|]*)\|", line.strip())
        if match and match.group(1) != "package":
            table[match.group(1)] = frozenset(
                p.strip() for p in match.group(2).split(",") if p.strip())
    return table


def tulle_packages() -> set[str]:
    return {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} \
        | TOP_MODULES


def cross_package() -> Iterator[tuple[Import, str, str]]:
    for imp in imports():
        if not imp.target.startswith("tulle."):
            continue
        source, target = package_of(imp.module), package_of(imp.target)
        if source != target and target in tulle_packages() and target != "errors":
            yield imp, source, target


def test_the_table_names_every_package_once() -> None:
    assert set(allowed()) == tulle_packages()


def test_every_import_is_one_the_table_allows() -> None:
    table = allowed()
    offenders = sorted(f"{imp.module}:{imp.line} imports {imp.target} ({source} may not "
                       f"import {target})"
                       for imp, source, target in cross_package()
                       if target not in table[source])
    assert offenders == []


def test_the_table_allows_nothing_that_is_not_used() -> None:
    """A row stays a true description of the code, not a wish list."""
    used: dict[str, set[str]] = {}
    for _, source, target in cross_package():
        used.setdefault(source, set()).add(target)
    stale = {package: sorted(may - used.get(package, set()))
             for package, may in allowed().items() if may - used.get(package, set())}
    assert stale == {}


def test_no_modules_import_each_other_in_a_circle() -> None:
    modules = {module_name(p) for p in SOURCE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports():
        if imp.target in modules and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    cycles = _strongly_connected(graph)
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# -- inside the control plane -------------------------------------------------------------------

def _targets(prefix: str) -> list[Import]:
    return [imp for imp in imports() if imp.module == prefix
            or imp.module.startswith(prefix + ".")]


@pytest.mark.parametrize("forbidden", ["tulle.controlplane.api", "tulle.controlplane.app",
                                       "aiohttp"])
def test_services_know_nothing_of_http_or_the_control_plane(forbidden: str) -> None:
    offenders = sorted(f"{imp.module}:{imp.line} imports {imp.target}"
                       for imp in _targets("tulle.controlplane.services")
                       if imp.target == forbidden or imp.target.startswith(forbidden + "."))
    assert offenders == []


def test_only_the_http_layer_and_the_wiring_serve_http() -> None:
    may_serve = ("tulle.controlplane.api", "tulle.controlplane.app")
    offenders = sorted(
        f"{imp.module}:{imp.line} imports {imp.target}" for imp in imports()
        if imp.target in ("aiohttp.web", "aiohttp.web_request", "aiohttp.typedefs")
        and not any(imp.module == m or imp.module.startswith(m + ".") for m in may_serve))
    assert offenders == []


def test_no_function_outside_the_http_layer_takes_a_request_or_the_control_plane() -> None:
    offenders = []
    for path in sorted((SOURCE / "controlplane").rglob("*.py")):
        name = module_name(path)
        if name.startswith("tulle.controlplane.api"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                for argument in arguments:
                    annotation = ast.unparse(argument.annotation) if argument.annotation \
                        else ""
                    if re.search(r"\b(web\.)?Request\b|\bControlPlane\b", annotation):
                        offenders.append(f"{name}.{node.name}({argument.arg}: {annotation})")
    assert offenders == []


def test_the_cli_reaches_the_control_plane_only_through_the_daemon() -> None:
    offenders = sorted(f"{imp.module}:{imp.line} imports {imp.target}"
                       for imp in _targets("tulle.cli")
                       if imp.target.startswith("tulle.controlplane")
                       and imp.target not in ("tulle.controlplane",
                                              "tulle.controlplane.daemon"))
    assert offenders == []
