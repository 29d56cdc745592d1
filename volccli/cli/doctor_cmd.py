"""`volccli doctor`: check settings, credentials, the endpoint and the clock, one line each."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .common import global_options, make_ui, print_json
from .lazy import LazyGroup, command_from
from .signatures import connection_flags, with_global_options

HELP = (
    "Check settings, credentials, the endpoint and the clock; say what to fix.\n\n"
    "One line per check: which auth mode and credentials won and why, the config file's "
    "permissions, whether the endpoint answers, the clock's distance from the server's, and "
    "whether the server accepts the credentials (one cheap call for a task that does not "
    "exist). Exit 0 when a call can be made, 3 for credentials or configuration, 7 when the "
    "endpoint is unreachable."
)


def doctor(
    ctx: typer.Context,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Also check that each request kind's req_key is enabled for the account "
            "(one cheap call each).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with every check.")
    ] = False,
) -> None:
    """Check settings, credentials, the endpoint and the clock; say what to fix."""
    from .. import doctor as checks
    from ..config import config_path
    from ..errors import VolccliError
    from .common import Session

    merged = global_options(ctx)
    ui = make_ui(merged)
    try:
        session = Session(ui, connection_flags(merged))
    except VolccliError as error:
        report = checks.unresolved(error, config_path())
    else:
        with session:
            report = checks.diagnose(session.resolved, probe=probe)
    if as_json:
        print_json(report.to_json())
    else:
        color = sys.stdout.isatty() and not ui.no_color
        for check in report.checks:
            line = check.line()
            if color and check.status != "ok":
                line = typer.style(line, fg="red" if check.status == "fail" else "yellow")
            typer.echo(line)
    if report.exit_code:
        ui.note(f"volccli doctor: {report.problems} problem(s); exit {report.exit_code}")
    elif report.problems:
        ui.note(f"volccli doctor: ready, with {report.problems} warning(s)")
    else:
        ui.note("volccli doctor: ready")
    raise typer.Exit(report.exit_code)


def make(group: LazyGroup) -> Any:
    return command_from(group, "doctor", with_global_options(doctor), HELP)
