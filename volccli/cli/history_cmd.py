"""`volccli history`: the requests made from this machine, newest first; `history path`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .common import global_options, make_ui, print_json, reported
from .lazy import LazyGroup, group_from
from .signatures import with_global_options

app = typer.Typer(
    help="Show past requests (newest first), or where they are kept.",
    invoke_without_command=True,
    rich_markup_mode="rich",
)


@app.callback()
@with_global_options
def history(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="How many rows (0 = all).", metavar="N")
    ] = 20,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            help=(
                "Only rows that contain TEXT exactly as typed (no wildcards: % and _ are "
                "plain characters; the case of A-Z is ignored) in the prompt, command, "
                "req_key, request or task id, a parameter's value or an output path."
            ),
            metavar="TEXT",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per row on stdout.")
    ] = False,
) -> None:
    """Show past requests (newest first): time, outcome, command, prompt and outputs."""
    if ctx.invoked_subcommand is not None:
        return
    ui = make_ui(global_options(ctx))
    with reported(ui, json_errors=json_out):
        from ..errors import ConfigError, InputError
        from ..history import SEARCH_MAX, db_path, query

        if limit < 0:
            raise InputError(f"-n {limit} must be 0 (all) or more", "e.g. -n 50")
        if search and len(search) > SEARCH_MAX:
            raise InputError(
                f"--search is {len(search):,} characters long; at most {SEARCH_MAX:,} are "
                "searched for",
                "search for a shorter part of the text",
            )
        try:
            rows = query(db_path(), limit=limit, search=search or "")
        except NotADirectoryError as exc:
            raise ConfigError(
                f"cannot read the history at {db_path()}: {exc.filename} is a file, not a folder",
                "point VOLCCLI_DATA_DIR at a folder (or unset it)",
            ) from None
        except Exception as exc:  # sqlite3 is imported lazily
            if type(exc).__module__ != "sqlite3":
                raise
            raise InputError(
                f"cannot read the history at {db_path()} ({exc})",
                "check the file's permissions, or move it away to start a new history",
            ) from None
        for row in rows:
            if json_out:
                print_json(row)
            else:
                sys.stdout.write(_line(row) + "\n")
        if not rows and not json_out:
            ui.note("no matching requests in the history" if search else "the history is empty")


def _line(row: dict[str, Any]) -> str:
    time_text = str(row.get("time") or "")[:19].replace("T", " ")
    outcome = str(row.get("outcome") or "")
    if row.get("error_code"):
        outcome += f" {row['error_code']}"
    prompt = str(row.get("prompt") or "")
    if len(prompt) > 40:
        prompt = prompt[:39] + "…"
    outputs = row.get("outputs") or []
    paths = " ".join(str(item.get("path")) for item in outputs if isinstance(item, dict))
    import json  # here, not at the top: every start imports this module

    parts = [
        time_text,
        f"{outcome:<10}",
        f"{row.get('command') or '':<13}",
        json.dumps(prompt, ensure_ascii=False),
    ]
    if paths:
        parts.append(paths)
    elif row.get("request_id"):
        parts.append(f"request {row['request_id']}")
    return "  ".join(parts)


@app.command("path")
def path_command() -> None:
    """Print where the history database is."""
    from ..history import db_path

    typer.echo(str(db_path()))


def make(group: LazyGroup) -> Any:
    return group_from(group, "history", app)
