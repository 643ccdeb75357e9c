"""The ``capsim`` command line: the app, its one-line errors, and the command groups registered on it.

Each command group lives in its own module (``sim.cli.run``, ``sim.cli.workload``,
``sim.cli.catalog``, ``sim.cli.calibrate``, ``sim.cli.validate``, ``sim.cli.curve``,
``sim.cli.compare``, ``sim.cli.plan``) over the helpers they share (``sim.cli.common``). This module imports them;
none of them imports this one; only ``sim.cli.reference`` (the generated CLI reference) and ``__main__`` do.

Errors in what the user gave (a bad scenario, a bad ``--set``) print one line and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from sim.cli.calibrate import calibrate_command
from sim.cli.catalog import catalog_app
from sim.cli.compare import compare_command
from sim.cli.curve import curve as curve_command
from sim.cli.plan import plan_command
from sim.cli.report import report_command
from sim.cli.run import run
from sim.cli.sweep import sweep_command
from sim.cli.validate import validate_command
from sim.cli.workload import workload_app

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """The command group with click's usage errors (an unknown option, a missing argument, a
    value of the wrong type) as one ``capsim: error:`` line and exit code 2, like every other
    refusal, instead of a usage box spread over many lines."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,  # type: ignore[override]
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except typer.Abort:
            typer.echo("capsim: aborted", err=True)
            rv = 1
        except Exception as e:
            # Click's exceptions, known by their interface: typer bundles its own copy of click
            # (typer._click) in some versions and uses the click package in others.
            if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare `capsim workload`: its help, as click shows it
                e.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(e, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
                typer.echo(f"capsim: error: {where}{message}{hint}", err=True)
            rv = e.exit_code  # type: ignore[attr-defined]
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="capsim",
    help="Capacity simulator for LLM inference serving: simulate a serving configuration under a workload "
         "and report latency, throughput, goodput and how busy the GPUs are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """capsim: what serving costs, before it is bought."""


# Listed in `capsim --help` in this order: the commands, then the groups.
app.command("run")(run)
app.command("calibrate")(calibrate_command)
app.command("validate")(validate_command)
app.command("curve")(curve_command)
app.command("compare")(compare_command)
app.command("plan")(plan_command)
app.command("report")(report_command)
app.command("sweep")(sweep_command)
app.add_typer(workload_app, name="workload")
app.add_typer(catalog_app, name="catalog")


def _help_width() -> None:
    """Render ``--help`` at least 120 columns wide when it is not going to a terminal (piped, or
    captured by a tool), unless COLUMNS or TERMINAL_WIDTH says otherwise: rich assumes 80 there,
    which squeezes the option table and cuts long examples with an ellipsis."""
    import os
    import shutil

    import typer.rich_utils

    if os.environ.get("TERMINAL_WIDTH") or os.environ.get("COLUMNS") or sys.stdout.isatty():
        return
    typer.rich_utils.MAX_WIDTH = max(shutil.get_terminal_size((120, 24)).columns, 120)


def main() -> None:
    """Console-script entry point."""
    _help_width()
    app()


if __name__ == "__main__":
    sys.exit(main())
