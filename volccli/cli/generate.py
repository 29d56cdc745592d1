"""The generation commands, made from the request-kind table: one code path for all five.

Each row of ``kinds.KINDS`` becomes a command whose parameters are the row's image
slots and fields plus the shared option groups; `call` is the same command over a row
with no fields. Every command lands in ``run_generation``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..kinds import CALL, KINDS, SUBMIT_ACTION, Kind
from .common import Session, print_json, reported
from .lazy import LazyCommand
from .options import (
    GLOBAL_OPTS,
    IMAGE_OPTS,
    OUTPUT_OPTS,
    REQUEST_OPTS,
    field_parameter,
    opt_parameter,
    parameter,
    slot_parameter,
)
from .signatures import CONTEXT, begin, connection_flags, signature_command

if TYPE_CHECKING:
    from ..runner import Job, Outcome, Request, Runner
    from ..ui import UI

CALL_PARAMS = (
    parameter("req_key", str | None, help="The req_key to call.", argument=True, metavar="REQ_KEY"),
    parameter(
        "body",
        str | None,
        decls=["--body"],
        panel="Request",
        metavar="FILE|-",
        help="A JSON object file ('-' for stdin) merged under the flags.",
    ),
    parameter(
        "action",
        str | None,
        decls=["--action"],
        panel="Request",
        help="Action to call. [default: CVProcess]",
    ),
    parameter(
        "version",
        str | None,
        decls=["--version"],
        panel="Request",
        help="API version. [default: 2022-08-31]",
    ),
)


def lazy_commands() -> list[LazyCommand]:
    """The generation commands, built on first use (see lazy.py)."""
    return [
        LazyCommand(
            kind.command,
            _help(kind),
            "Generate",
            f"Example: {kind.example}",
            partial(make_command, kind),
        )
        for kind in (*KINDS.values(), CALL)
    ]


def _help(kind: Kind) -> str:
    text = kind.summary
    if kind.req_key:
        text += f" (req_key {kind.req_key})"
    if kind.description:
        text += f"\n\n{kind.description}"
    return text.replace("[", "\\[")


def make_command(kind: Kind) -> Callable[..., None]:
    """A Typer command function whose signature is generated from the kind's row."""
    params = [CONTEXT]
    if not kind.req_key:
        params.append(CALL_PARAMS[0])
    params += [slot_parameter(s) for s in kind.slots if s.positional]
    params += [field_parameter(f) for f in kind.fields if f.positional]
    params += [slot_parameter(s) for s in kind.slots if not s.positional]
    params += [field_parameter(f) for f in kind.fields if not f.positional]
    if not kind.req_key:
        params += CALL_PARAMS[1:]
    groups = (IMAGE_OPTS if kind.slots else ()) + REQUEST_OPTS + OUTPUT_OPTS + GLOBAL_OPTS
    params += [opt_parameter(opt) for opt in groups]
    return signature_command(kind.command, kind.summary, params, partial(run_generation, kind))


def run_generation(kind: Kind, options: dict[str, Any]) -> None:
    merged, ui = begin(options)
    with (
        reported(ui, json_errors=options["json"]),
        Session(ui, connection_flags(merged)) as session,
    ):
        from ..build import build_request

        notes: list[str] = []
        request = build_request(kind, options, session.resolved, notes=notes)
        for note in notes:
            ui.note(f"note: {note}")
        execute(request, options, session, ui)


def execute(request: Request, options: dict[str, Any], session: Session, ui: UI) -> None:
    """Plan the jobs, then show them (--dry-run, --print-curl) or run them one by one."""
    from ..errors import VolccliError
    from ..output import ensure_folder, sweep_stale_temps
    from ..runner import FilterPolicy, Runner, RunOptions, plan
    from ..tasks import WAIT_TIMEOUT, PollPolicy
    from ..ui import event_printer

    jobs = plan(request)
    run_options = RunOptions(
        use_async=options["use_async"],
        poll=PollPolicy(interval=options["poll_interval"], timeout=options["wait_timeout"]),
        on_filtered=FilterPolicy.parse(options["on_filtered"]),
        download_timeout=float(session.resolved.get("timeout")),
    )
    if options["dry_run"] or options["print_curl"]:
        show_requests(jobs, options, session, ui)
        return
    # Credentials first: a refused key must not leave an empty output folder behind.
    runner = Runner(session.client(), options=run_options, record=recorder(session, options))
    made: Path | None = None  # an output folder this command created
    if request.output.folder is not None:
        made = ensure_folder(request.output.folder)
        swept = sweep_stale_temps(request.output.folder, recursive=False)
        if swept:
            ui.detail(f"removed {swept} temp file(s) left by an interrupted run")
    written: list[Path] = []
    for job in jobs:
        label = (
            f"{request.command} {job.index + 1}/{len(jobs)}" if len(jobs) > 1 else request.command
        )
        submitted: list[str] = []
        try:
            with ui.waiting(label) as state:
                outcome = runner.run(
                    job, on_event=event_printer(ui, state), on_task=submitted.append
                )
            error = outcome.error
            if error is not None and session.sandbox and "volccli task wait" in error.hint:
                # `task wait` could not reach it: the built-in sandbox stops with this run.
                error.hint = (
                    "raise --wait-timeout (the built-in sandbox's tasks end with it)"
                    if error.code == WAIT_TIMEOUT
                    else "run the command again (the built-in sandbox's tasks end with it)"
                )
            written += report(outcome, options, ui)
            if outcome.error is not None and outcome.status == "failed":
                raise outcome.error
        except VolccliError:
            if not written:
                # Refused (exit 4, 5 …): no empty folder is left behind as a trace.
                _remove_made_folders(made, runner)
            if job.index:  # some images of this command were made: say how far it got
                left = len(jobs) - job.index - 1
                rest = f", the other {left} were not sent" if left else ""
                ui.warn(
                    f"{request.command} {job.index + 1}/{len(jobs)} failed: "
                    f"{len(written)} image(s) were written{rest}"
                )
            raise
        except KeyboardInterrupt:
            if not written:
                _remove_made_folders(made, runner)  # as for a failure
            if submitted and session.sandbox is not None:
                ui.plain(f"volccli: task {submitted[-1]} ends with the built-in sandbox")
            elif submitted:  # the last one: a reseed's earlier tasks were answered
                # Submitted means paid for: say how to collect it instead of paying again.
                task_id = submitted[-1]
                ui.plain(
                    f"volccli: task {task_id} keeps running; fetch it with "
                    f"`volccli task wait {request.req_key} {task_id}`"
                )
            raise
    if options["open"] and written:
        if os.environ.get("CI"):
            ui.note("note: --open is ignored in CI")
        else:
            from ..viewer import open_images

            note = open_images(written)
            if note:
                ui.note(note)


def _remove_made_folders(made: Path | None, runner: Runner) -> None:
    """Remove the output folder and --name subfolders this command created, if empty."""
    from ..output import remove_empty_folders

    for folder in (made, *runner.made_folders):
        if folder is not None:
            remove_empty_folders(folder)


def recorder(session: Session, options: dict[str, Any]) -> Callable[[Outcome], None] | None:
    """The history hook; None when --no-log."""
    if options.get("no_log"):
        return None
    return session.history().record


def report(outcome: Outcome, options: dict[str, Any], ui: UI) -> list[Path]:
    """Paths (or JSON Lines) on stdout for each written image; notes on stderr."""
    job = outcome.job
    if outcome.status == "skipped" and not outcome.images:
        existing = outcome.existing
        ui.note(
            f"skipped {job.request.command} {job.index + 1}: "
            f"{existing or 'the output'} already exists"
        )
        if options["json"]:
            record = {"status": "skipped", "command": job.request.command, "index": job.index}
            if existing is not None:
                record["path"] = str(existing)
            print_json(record)
        return []
    if outcome.status == "filtered":
        ui.warn(
            f"{job.request.command} {job.index + 1} was filtered by the audit and skipped"
            f" ({outcome.error.message if outcome.error else ''})"
        )
        if options["json"]:
            print_json(
                {
                    "status": "filtered",
                    "command": job.request.command,
                    "index": job.index,
                    "request_id": outcome.request_id,
                }
            )
        return []
    paths = []
    for image in outcome.images:
        if image.path is None:
            continue
        paths.append(image.path)
        if options["json"]:
            print_json(
                {
                    "path": str(image.path),
                    "req_key": job.request.req_key,
                    "command": job.request.command,
                    "seed": outcome.seed,
                    "request_id": outcome.request_id,
                    "elapsed": round(outcome.elapsed, 3),
                    "width": image.width,
                    "height": image.height,
                    "sha256": image.sha256,
                    "bytes": image.size,
                    "index": job.index,
                    **({"task_id": outcome.task_id} if outcome.task_id else {}),
                }
            )
        else:
            sys.stdout.write(str(image.path) + ("\0" if options["null"] else "\n"))
            sys.stdout.flush()
    return paths


def show_requests(jobs: list[Job], options: dict[str, Any], session: Session, ui: UI) -> None:
    """--dry-run / --print-curl: the exact request of each job, nothing sent."""
    from ..curl import curl_command
    from ..describe import dry_run_json, dry_run_text
    from ..payload import encode_body, preview_body
    from ..tasks import split_body

    connection = session.connection()
    if options["print_curl"] and session.sandbox is not None:
        point = (
            "VOLCCLI_ENDPOINT at it, with the access key pair it prints"
            if connection.mode == "official"
            else "VOLCCLI_BASE_URL at it"
        )
        ui.note(
            "note: the built-in sandbox stops when volccli exits, so these curl commands "
            f"cannot reach it; run `volccli sandbox serve` and point {point}"
        )
    for job in jobs:
        request = job.request
        body = job.body
        action = request.action or request.kind.action
        version = request.version or request.kind.version
        if options["use_async"]:
            body, _ = split_body(body)
            action = SUBMIT_ACTION
        encoded = encode_body(body)
        url = connection.url(action, version)
        headers = connection.auth.headers("POST", url, encoded.sha256)
        if options["dry_run"]:
            preview = preview_body(body)
            render = dry_run_json if options["json"] else dry_run_text
            sys.stdout.write(render(url, headers, preview, len(encoded), encoded.sha256) + "\n")
        if options["print_curl"]:
            label = f"{request.command} {job.index + 1}/{len(jobs)}"
            curl = curl_command(connection, url, headers, encoded, label=label)
            try:
                if options["json"]:
                    print_json(curl.to_json())
                else:
                    sys.stdout.write(curl.text() + "\n\n")
                sys.stdout.flush()
            except OSError:
                # Nothing names the body file if its command was not printed: remove it.
                curl.body_file.unlink(missing_ok=True)
                raise
        sys.stdout.flush()
