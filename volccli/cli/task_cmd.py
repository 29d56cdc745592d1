"""`volccli task get|wait REQ_KEY TASK_ID`: check or fetch a task submitted with --async.

`get` polls once and prints the status; `wait` polls with backoff until the task is
done, then writes its images like any command (names, --on-exists, sidecars, history).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import Session, global_options, make_ui, print_json, reported
from .options import CONNECTION_OPTS
from .signatures import with_global_options

app = typer.Typer(
    help="Check or fetch async tasks (submitted with --async).",
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
    """Check or fetch async tasks (submitted with --async)."""


def _session_flags(ctx: typer.Context) -> tuple[dict[str, Any], Any]:
    merged = global_options(ctx)
    return {opt.param: merged.get(opt.param) for opt in CONNECTION_OPTS}, make_ui(merged)


def _check_ref(req_key: str, task_id: str) -> None:
    """An empty REQ_KEY or TASK_ID is refused here rather than sent."""
    from ..errors import InputError

    for name, value in (("REQ_KEY", req_key), ("TASK_ID", task_id)):
        if not value.strip():
            raise InputError(
                f"{name} is empty", "give the req_key and task id that --async printed"
            )


@app.command("get")
@with_global_options
def get(ctx: typer.Context, req_key: ReqKey, task_id: TaskId, json_out: Json = False) -> None:
    """Poll a task once and print its status (in_queue, generating, done)."""
    flags, ui = _session_flags(ctx)
    with reported(ui, json_errors=json_out), Session(ui, flags) as session:
        from ..tasks import wait

        _check_ref(req_key, task_id)
        envelope = wait(session.client(), req_key, task_id, {}, once=True)
        data = dict(envelope.data)
        status = str(data.get("status") or "")
        images = len(data.get("binary_data_base64") or []) + len(data.get("image_urls") or [])
        if json_out:
            # The status and metadata, without megabytes of image data.
            if data.get("binary_data_base64"):
                data["binary_data_base64"] = f"<{len(data['binary_data_base64'])} images>"
            print_json(
                {
                    "req_key": req_key,
                    "task_id": task_id,
                    "status": status,
                    "request_id": envelope.request_id,
                    "images": images,
                    "data": data,
                }
            )
            return
        text = f"task {task_id}: {status}"
        if status == "done":
            text += (
                f" ({images} image{'s' if images != 1 else ''}; "
                f"`volccli task wait {req_key} {task_id}` writes them)"
            )
        typer.echo(text)


@app.command("wait")
@with_global_options
def wait_command(
    ctx: typer.Context,
    req_key: ReqKey,
    task_id: TaskId,
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Folder for the images. [default: .]",
            metavar="DIR",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="File name template (see `volccli txt2img --help`).",
            metavar="TEMPLATE",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    on_exists: Annotated[
        str | None,
        typer.Option(
            help="When a file exists: suffix, skip, overwrite or fail.",
            metavar="POLICY",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    return_url: Annotated[
        bool,
        typer.Option(
            "--return-url", help="Ask for result URLs (downloaded at once).", rich_help_panel=OUTPUT
        ),
    ] = False,
    json_out: Json = False,
    null: Annotated[
        bool,
        typer.Option(
            "--null", "-0", help="Separate printed paths with NUL.", rich_help_panel=OUTPUT
        ),
    ] = False,
    no_sidecar: Annotated[
        bool,
        typer.Option(
            "--no-sidecar", help="No .json recipe beside each image.", rich_help_panel=OUTPUT
        ),
    ] = False,
    no_embed: Annotated[
        bool,
        typer.Option("--no-embed", help="No recipe inside the image file.", rich_help_panel=OUTPUT),
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(help="First wait between polls.", metavar="SECONDS")
    ] = 3.0,
    wait_timeout: Annotated[
        float, typer.Option(help="Give up after this long.", metavar="SECONDS")
    ] = 900.0,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not record it in the history.")
    ] = False,
) -> None:
    """Wait for a task to finish, then write its images like any command."""
    flags, ui = _session_flags(ctx)
    options = {
        "output_dir": output_dir,
        "name": name,
        "on_exists": on_exists,
        "json": json_out,
        "null": null,
        "no_sidecar": no_sidecar,
        "no_embed": no_embed,
        "no_log": no_log,
    }
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
        # Only what the get-result call carries is known: the rest stayed with the submitter.
        body: dict[str, Any] = {"req_key": req_key}
        if return_url:
            body["return_url"] = True
        import hashlib  # here, not at the top: every start imports this module

        identity = hashlib.sha256(f"task:{req_key}:{task_id}".encode()).hexdigest()
        job = Job(request, 0, body, identity)
        if spec.folder is not None:
            ensure_folder(spec.folder)
        runner = Runner(
            session.client(),
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
