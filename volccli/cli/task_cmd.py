"""`volccli task get|wait|cancel REQ_KEY TASK_ID`: tasks submitted with --async.

`get` polls once and prints the status; `wait` polls with backoff until the task is
done, then writes its images like any command (names, --on-exists, sidecars, history);
`cancel` cancels a task that is still queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from .common import Session, global_options, make_ui, print_json, reported
from .lazy import LazyGroup, group_from
from .signatures import connection_flags, with_global_options

app = typer.Typer(
    help="Check, fetch or cancel async tasks (submitted with --async).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

ReqKey = Annotated[
    str, typer.Argument(help="The req_key the task was submitted with.", show_default=False)
]
TaskId = Annotated[str, typer.Argument(help="The task id.", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
OUTPUT = "Output"


@app.callback()
def task() -> None:
    """Check, fetch or cancel async tasks (submitted with --async)."""


def _check_ref(req_key: str, task_id: str) -> None:
    """An empty REQ_KEY or TASK_ID is refused here rather than sent."""
    from ..errors import InputError

    for name, value in (("REQ_KEY", req_key), ("TASK_ID", task_id)):
        if not value.strip():
            raise InputError(
                f"{name} is empty", "give the req_key and task id that --async printed"
            )


@contextmanager
def _task_session(
    ctx: typer.Context, req_key: str, task_id: str, json_out: bool
) -> Iterator[Session]:
    """A session for one call about a task, with errors reported as for any command."""
    merged = global_options(ctx)
    ui = make_ui(merged)
    with reported(ui, json_errors=json_out), Session(ui, connection_flags(merged)) as session:
        _check_ref(req_key, task_id)
        yield session


def _print_task(req_key: str, task_id: str, status: str, request_id: str, **more: Any) -> None:
    print_json(
        {"req_key": req_key, "task_id": task_id, "status": status, "request_id": request_id} | more
    )


@app.command("get")
@with_global_options
def get(ctx: typer.Context, req_key: ReqKey, task_id: TaskId, json_out: Json = False) -> None:
    """Poll a task once and print its status (in_queue, generating, done)."""
    with _task_session(ctx, req_key, task_id, json_out) as session:
        from ..tasks import wait

        envelope = wait(session.client(), req_key, task_id, {}, once=True)
        data = dict(envelope.data)
        status = str(data.get("status") or "")
        images = len(data.get("binary_data_base64") or []) + len(data.get("image_urls") or [])
        if json_out:
            # The status and metadata, without megabytes of image data.
            if data.get("binary_data_base64"):
                data["binary_data_base64"] = f"<{len(data['binary_data_base64'])} images>"
            _print_task(req_key, task_id, status, envelope.request_id, images=images, data=data)
            return
        text = f"task {task_id}: {status}"
        if status == "done":
            text += (
                f" ({images} image{'s' if images != 1 else ''}; "
                f"`volccli task wait {req_key} {task_id}` writes them)"
            )
        typer.echo(text)


@app.command("cancel")
@with_global_options
def cancel(ctx: typer.Context, req_key: ReqKey, task_id: TaskId, json_out: Json = False) -> None:
    """Cancel a task that is still queued (CVCancelTask); one that has started runs on."""
    with _task_session(ctx, req_key, task_id, json_out) as session:
        from ..tasks import cancel as cancel_task

        envelope = cancel_task(session.client(), req_key, task_id)
        status = str(envelope.data.get("status") or "cancelled")
        if json_out:
            _print_task(req_key, task_id, status, envelope.request_id)
            return
        typer.echo(f"task {task_id}: {status}")


# The output and polling options of `wait`, as every generation command has them.
_WAIT_OPTIONS = (
    "output_dir",
    "name",
    "on_exists",
    "json",
    "null",
    "no_sidecar",
    "no_embed",
    "poll_interval",
    "wait_timeout",
    "no_log",
)


def _wait_command() -> Any:
    from ..kinds import RETURN_URL
    from .options import GLOBAL_OPTS, OUTPUT_OPTS, REQUEST_OPTS, field_parameter, opt_parameter
    from .options import parameter as make_parameter
    from .signatures import CONTEXT, signature_command

    params = [
        CONTEXT,
        make_parameter(
            "req_key",
            str,
            argument=True,
            metavar="REQ_KEY",
            default=...,
            help="The req_key the task was submitted with.",
        ),
        make_parameter(
            "task_id", str, argument=True, metavar="TASK_ID", default=..., help="The task id."
        ),
        *(opt_parameter(opt) for opt in OUTPUT_OPTS + REQUEST_OPTS if opt.param in _WAIT_OPTIONS),
        field_parameter(RETURN_URL),
        *(opt_parameter(opt) for opt in GLOBAL_OPTS),
    ]
    return signature_command(
        "wait",
        "Wait for a task to finish, then write its images like any command.",
        params,
        _wait,
    )


def _wait(options: dict[str, Any]) -> None:
    from .signatures import begin

    merged, ui = begin(options)
    req_key, task_id = options["req_key"], options["task_id"]
    poll_interval, wait_timeout = options["poll_interval"], options["wait_timeout"]
    json_out, return_url = options["json"], bool(options["return_url"])
    flags = connection_flags(merged)
    with reported(ui, json_errors=json_out), Session(ui, flags) as session:
        from ..build import output_spec
        from ..errors import InputError
        from ..kinds import CALL, kind_for
        from ..output import ensure_folder
        from ..runner import Job, Request, Runner, RunOptions
        from ..tasks import PollPolicy
        from ..ui import event_printer
        from .generate import recorder, report

        _check_ref(req_key, task_id)
        if poll_interval <= 0 or wait_timeout <= 0:
            raise InputError("--poll-interval and --wait-timeout must be above 0", "e.g. 3")
        spec = output_spec(options, session.resolved, 1)
        kind = kind_for(req_key) or CALL
        request = Request(kind=kind, req_key=req_key, values={}, output=spec)
        body, identity = _submitted(req_key, task_id, ui)
        if return_url:
            body["return_url"] = True
        job = Job(request, 0, body, identity)
        client = session.client()  # a refused key leaves no empty output folder behind
        if spec.folder is not None:
            ensure_folder(spec.folder)
        runner = Runner(
            client,
            options=RunOptions(
                use_async=True,
                poll=PollPolicy(interval=poll_interval, timeout=wait_timeout),
                download_timeout=float(session.resolved.get("timeout")),
            ),
            record=recorder(session, options),
        )
        with ui.waiting(f"task {task_id}") as state:
            printer = event_printer(ui, state)
            seen: list[str] = []

            def on_event(kind: str, info: dict[str, Any]) -> None:
                printer(kind, info)
                status = str(info.get("status") or "")
                shown = kind == "status" and not status.startswith("task ")
                if shown and not ui.interactive and status not in seen[-1:]:
                    seen.append(status)
                    ui.note(f"task {task_id}: {status}")

            outcome = runner.run(job, on_event=on_event, task_id=task_id)
        report(outcome, options, ui)
        if outcome.status == "failed" and outcome.error is not None:
            raise outcome.error


def _submitted(req_key: str, task_id: str, ui: Any) -> tuple[dict[str, Any], str]:
    """(body, request hash) of the task as submitted, from this machine's history.

    A task volccli submitted here (with --async, then given up on with --wait-timeout
    or Ctrl-C) gets its prompt, seed and parameters back: in its file name, sidecar and
    history row, so `rerun` works on it. A task submitted elsewhere is known only by
    what the get-result call carries.
    """
    import hashlib  # here, not at the top: every start imports this module
    import sqlite3

    from ..history import db_path, submission

    try:
        found = submission(db_path(), req_key, task_id)
    except (sqlite3.Error, OSError) as exc:
        ui.detail(f"history not searched for task {task_id} ({exc})")
        found = None
    if found is not None:
        ui.detail(f"task {task_id}: parameters from the history ({found.get('time')})")
        identity = str(found.get("request_hash") or "")
        if identity:
            return dict(found["params"]), identity
    body: dict[str, Any] = {"req_key": req_key}
    return body, hashlib.sha256(f"task:{req_key}:{task_id}".encode()).hexdigest()


app.command("wait")(_wait_command())


def make(group: LazyGroup) -> Any:
    return group_from(group, "task", app)
