"""`volccli doctor`: check settings, credentials, the endpoint and the clock, one line each."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import global_options, make_ui, print_json
from .lazy import LazyGroup, command_from
from .signatures import connection_flags, with_global_options

if TYPE_CHECKING:
    from ..config import Resolved
    from ..doctor import Report
    from ..ui import UI

HELP = (
    "Check settings, credentials, the endpoint and the clock; say what to fix.\n\n"
    "One line per check: which auth mode and credentials won and why, each bad setting or "
    "ignored source, the config file's permissions, whether the endpoint answers, the "
    "clock's distance from the server's, and whether the server accepts the credentials "
    "(one cheap call for a task that does not exist). Every problem is reported: the checks "
    "go on past a bad setting (with its default) and past bad credentials (the endpoint and "
    "the clock are still checked).\n\n"
    "Exit 0 when a call can be made, 3 for credentials or configuration, 7 when the endpoint "
    "is unreachable, 2 for a bad option value. When there are several, 2 wins over 3 and 3 "
    "over 7: the configuration comes first."
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
    from ..config import config_path, resolve
    from ..errors import VolccliError

    merged = global_options(ctx)
    ui = make_ui(merged)
    flags = connection_flags(merged)
    settings = {k: v for k, v in flags.items() if k not in ("sandbox", "retry_server_errors")}
    try:
        # Every problem kept, none raised, so that each gets its line.
        resolved = resolve(settings, keep_going=True)
    except VolccliError as error:  # a bad flag value: a usage error
        report = checks.unresolved(error, config_path())
    else:
        report = _diagnose(ui, flags, resolved, probe)
    if as_json:
        print_json(report.to_json())
    else:
        color = sys.stdout.isatty() and not ui.no_color
        for check in report.checks:
            line = check.line()
            if color and check.status != "ok":
                line = typer.style(line, fg="red" if check.status == "fail" else "yellow")
            typer.echo(line)
    ui.note(report.summary())
    raise typer.Exit(report.exit_code)


def _diagnose(ui: UI, flags: dict[str, Any], resolved: Resolved, probe: bool) -> Report:
    """The checks on ``resolved``, or with --sandbox on the built-in sandbox's settings."""
    from .. import doctor as checks
    from ..errors import VolccliError
    from .common import Session

    if not flags.get("sandbox"):
        return checks.diagnose(resolved, probe=probe)
    if resolved.errors:
        # The sandbox comes with a session, which the problems above stop.
        skipped = checks.Check(
            "sandbox",
            "warn",
            "not started, so nothing was sent: fix the problems above first",
            "then run `volccli --sandbox doctor` again",
        )
        return checks.diagnose(resolved, instead_of_calls=skipped)
    try:
        session = Session(ui, flags)
    except VolccliError as error:  # e.g. a bad VOLCCLI_SANDBOX_* knob
        return checks.diagnose(resolved, instead_of_calls=checks.fail("sandbox", error))
    with session:
        return checks.diagnose(session.resolved, probe=probe)


def make(group: LazyGroup) -> Any:
    return command_from(group, "doctor", with_global_options(doctor), HELP)
