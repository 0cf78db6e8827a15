"""The CLI imports only the module of the command it runs: the table of which module adds
which commands must be exactly what each module's register() adds."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer

from tulle.cli.main import COMMAND_MODULES, command_name


@pytest.mark.parametrize("module", sorted(COMMAND_MODULES))
def test_the_table_names_what_each_module_registers(module: str) -> None:
    app = typer.Typer()
    importlib.import_module(f"tulle.cli.{module}").register(app)
    # A command without a name takes its function's (Typer writes "_" as "-").
    names = [c.name or getattr(c.callback, "__name__", "").replace("_", "-")
             for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert tuple(names) == COMMAND_MODULES[module]


def test_every_module_of_the_package_is_in_the_table() -> None:
    from pathlib import Path

    import tulle.cli

    found = {p.stem for p in Path(tulle.cli.__file__).parent.glob("cmd_*.py")}
    assert found == set(COMMAND_MODULES)


@pytest.mark.parametrize(("argv", "name"), [
    (["stat", "-o", "json"], "stat"),
    (["--state-dir", "/x", "get", "slo"], "get"),
    (["--state-dir=/x", "apply"], None),  # hoisted as one argument: an option, help for all
    (["--help"], None),
    ([], None),
])
def test_the_command_is_found_after_global_options(argv: list[str], name: str | None) -> None:
    assert command_name(argv) == name


def test_a_command_loads_its_module_alone_and_help_lists_every_command() -> None:
    probe = ("import sys; from tulle.cli import main as m; m._register(sys.argv[1:]); "
             "print(sorted(n for n in sys.modules if n.startswith('tulle.cli.cmd_')))")
    one = subprocess.run([sys.executable, "-c", probe, "stat"], capture_output=True,
                         text=True, check=True).stdout
    assert one.strip() == "['tulle.cli.cmd_telemetry']"
    listed = subprocess.run([sys.executable, "-m", "tulle.cli", "--help"], capture_output=True,
                            text=True, check=True).stdout
    for names in COMMAND_MODULES.values():
        for name in names:
            assert name in listed
