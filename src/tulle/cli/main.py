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


# One module per area; each has register(app), which adds these commands. Imported only when
# the CLI runs, and only the one a command needs: the others cost a third of a second of
# imports on every call (tests/unit/cli/test_lazy_commands.py keeps this table true).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "cmd_controlplane": ("up", "down", "status"),
    "cmd_resources": ("apply", "get", "delete"),
    "cmd_describe": ("describe",),
    "cmd_run": ("run",),
    "cmd_certs": ("certs",),
    "cmd_demo": ("demo",),
    "cmd_telemetry": ("stat", "routes", "edges"),
    "cmd_prometheus": ("prometheus",),
    "cmd_tap": ("tap",),
    "cmd_top": ("top",),
    "cmd_proxy_status": ("proxy-status",),
    "cmd_proxy_config": ("proxy-config",),
    "cmd_proxy": ("proxy",),
    "cmd_check": ("check",),
    "cmd_analyze": ("analyze",),
    "cmd_diagnose": ("diagnose",),
    "cmd_history": ("history", "rollback"),
    "cmd_bug_report": ("bug-report",),
    "cmd_wait": ("wait",),
    "cmd_token": ("token",),
    "cmd_workload": ("workload",),
    "cmd_policy": ("policy",),
    "cmd_gateway": ("gateway",),
    "cmd_whatif": ("what-if",),
    "cmd_slo": ("slo",),
    "cmd_rollout": ("rollout",),
    "cmd_dashboard": ("dashboard",),
}


def command_name(argv: list[str]) -> str | None:
    """The subcommand ``argv`` (global options hoisted to the front) runs, if it names one."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in _GLOBAL_OPTIONS:
            index += 2
            continue
        if arg.startswith("-"):
            return None  # --help, --version: the whole CLI
        return arg
    return None


def _register(argv: list[str] | None = None) -> None:
    """Register the module of the command ``argv`` runs; every module when it runs none (help,
    completion) or one no module has (click then lists them all in its error)."""
    import importlib

    wanted = command_name(argv) if argv is not None else None
    if wanted == "version":  # defined here
        return
    modules = [m for m, names in COMMAND_MODULES.items() if wanted in names] or \
        list(COMMAND_MODULES)
    for name in modules:
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
    argv = hoist_global_options(sys.argv[1:])
    completing = "_TULLE_COMPLETE" in os.environ
    _register(None if completing else argv)
    if completing:  # a Tab press: register Typer's shell classes
        from typer._completion_classes import completion_init

        completion_init()
    command = typer.main.get_command(app)
    _plain_help(command)
    try:
        command.main(args=argv, prog_name="tulle", standalone_mode=True)
    except TulleError as error:
        print(error.render(), file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
