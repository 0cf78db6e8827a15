"""`tulle`: the command line. Commands live in one module per area; this file wires them."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from tulle import __version__
from tulle.cli.output import Format, OutputOption, emit
from tulle.errors import TulleError
from tulle.settings import StatePaths

app = typer.Typer(
    name="tulle",
    help="tulle: a service mesh on Envoy that tells you why things broke.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True)
class Context:
    paths: StatePaths


StateDirOption = Annotated[
    str | None,
    typer.Option("--state-dir", envvar="TULLE_HOME", show_envvar=True,
                 help="State directory of the control plane [default: ~/.tulle]"),
]


def _print_version(value: bool) -> None:
    if value:
        print(f"tulle {__version__}")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context, state_dir: StateDirOption = None,
          _version: Annotated[bool, typer.Option(
              "--version", is_eager=True, callback=_print_version,
              help="Print tulle's version and exit")] = False) -> None:
    ctx.obj = Context(StatePaths.resolve(state_dir))


@app.command()
def version(output: OutputOption = Format.TABLE) -> None:
    """Print tulle's version."""
    emit({"version": __version__}, output, lambda v: f"tulle {v['version']}")


@app.command()
def completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish")]) -> None:
    """Print the shell completion script: `source <(tulle completion bash)`, or for fish
    `tulle completion fish | source`. Completes commands, options, kinds and the names of
    resources, services, workloads and proxies."""
    from tulle.cli.complete import SHELLS, script
    from tulle.errors import UsageError

    if shell not in SHELLS:
        raise UsageError(f"no completion for shell {shell!r}",
                         hint=f"choose one of {', '.join(SHELLS)}")
    print(script(shell))


# One module per area; each has register(app). Imported only when the CLI runs.
_COMMAND_MODULES = (
    "cmd_controlplane", "cmd_resources", "cmd_describe", "cmd_run", "cmd_certs", "cmd_demo",
    "cmd_telemetry", "cmd_prometheus", "cmd_tap", "cmd_top", "cmd_proxy_status",
    "cmd_proxy_config", "cmd_proxy", "cmd_check", "cmd_analyze", "cmd_diagnose",
    "cmd_history", "cmd_bug_report", "cmd_wait", "cmd_token", "cmd_workload", "cmd_policy",
    "cmd_gateway", "cmd_whatif", "cmd_slo",
)


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"tulle.cli.{name}").register(app)


# Options of the whole CLI, which kubectl users also write after the subcommand.
_GLOBAL_OPTIONS = ("--state-dir",)


def hoist_global_options(argv: list[str]) -> list[str]:
    """``get services --state-dir X`` -> ``--state-dir X get services``: global options may
    come anywhere before a ``--`` (after it, they belong to the workload's own command)."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest += argv[index:]
            break
        name = arg.partition("=")[0]
        if name in _GLOBAL_OPTIONS:
            if "=" in arg:
                front.append(arg)
            else:
                front += argv[index:index + 2]
                index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


def _plain_help(command: Any) -> None:
    """Help without type placeholders: ``--window WINDOW``, not ``--window <str>``; flags
    show no value; choices stay ``[table|json]``."""
    for param in command.params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        if getattr(param, "param_type_name", "") == "argument":
            # The argument's name says what it is; Typer would add "<str>" after it.
            param.display_type_rich = lambda ctx: None
        if param.metavar is None:
            # Typer's own parameters describe their type; click's carry it as ``type``.
            described = getattr(param, "type_descriptor", None) or getattr(param, "type", None)
            choices = getattr(described, "choices", None)
            param.metavar = ("[" + "|".join(map(str, choices)) + "]" if choices
                             else (param.name or "value").upper())
    for child in getattr(command, "commands", {}).values():
        _plain_help(child)


def main() -> None:
    # Ctrl-C must work even when a shell started us with SIGINT ignored (background jobs of
    # non-interactive shells inherit the ignore): tap, top and demo stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _register()
    if "_TULLE_COMPLETE" in os.environ:  # a Tab press: register Typer's shell classes
        from typer._completion_classes import completion_init

        completion_init()
    command = typer.main.get_command(app)
    _plain_help(command)
    try:
        command.main(args=hoist_global_options(sys.argv[1:]), prog_name="tulle",
                     standalone_mode=True)
    except TulleError as error:
        print(error.render(), file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
