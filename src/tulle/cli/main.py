"""`tulle`: the command line. Commands live in one module per area; this file wires them."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from typing import Annotated

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


@app.callback()
def _root(ctx: typer.Context, state_dir: StateDirOption = None) -> None:
    ctx.obj = Context(StatePaths.resolve(state_dir))


@app.command()
def version(output: OutputOption = Format.TABLE) -> None:
    """Print tulle's version."""
    emit({"version": __version__}, output, lambda v: f"tulle {v['version']}")


# One module per area; each has register(app). Imported only when the CLI runs.
_COMMAND_MODULES = (
    "cmd_controlplane", "cmd_resources", "cmd_describe", "cmd_run", "cmd_certs", "cmd_demo",
    "cmd_telemetry", "cmd_prometheus", "cmd_tap", "cmd_top", "cmd_proxy_status",
    "cmd_proxy_config", "cmd_proxy", "cmd_check", "cmd_analyze", "cmd_diagnose",
    "cmd_history", "cmd_bug_report",
)


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"tulle.cli.{name}").register(app)


def main() -> None:
    # Ctrl-C must work even when a shell started us with SIGINT ignored (background jobs of
    # non-interactive shells inherit the ignore): tap, top and demo stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _register()
    try:
        app()
    except TulleError as error:
        print(error.render(), file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
