"""`volccli batch FILE|-`: many jobs from JSON Lines or CSV, checked first, then run.

The command is built lazily (see lazy.py) like the generation commands: it shares their
output, request, image and connection option tables, which the command line applies
to every row as defaults.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ExitCode, interrupt_exit
from .common import Session, print_json, reported
from .lazy import LazyGroup, command_from
from .options import (
    GLOBAL_OPTS,
    IMAGE_OPTS,
    OUTPUT_OPTS,
    REQUEST_OPTS,
    Opt,
    opt_parameter,
    parameter,
)
from .signatures import CONTEXT, begin, connection_flags, signature_command

if TYPE_CHECKING:
    from ..batchfile import BatchFile
    from ..batchreport import Reporter
    from ..jobs import BatchJob
    from ..ratelimit import AdaptiveLimiter
    from ..ui import UI

PANEL = "Batch"
HELP = (
    "Run many jobs from a JSON Lines or CSV file ('-' reads stdin): one job per row, "
    "checked before anything is sent, run in parallel under a rate limit, journalled so "
    "that running the same command again resumes."
)
EPILOG = (
    "Row keys: command (txt2img, edit, outpaint, product-style, controlnet, call) or "
    "req_key; fields by flag name (steps, width, watermark_position) or body name "
    "(ddim_steps, logo_info); images (image, mask, ref, control) relative to the file; "
    "name, output_dir, count. A prompt is sent as written (no @FILE or -); prompt_file "
    "(negative_prompt_file) reads one from a file beside the batch file. Any other key is "
    "a body field, like --set. "
    'Example: {"command": "txt2img", "prompt": "a red fox", "name": "fox", "count": 2}'
)

BATCH_OPTS: tuple[Opt, ...] = (
    Opt(
        "jobs",
        ("--jobs", "-j"),
        int | None,
        "Jobs in flight at once. [default: 4, setting jobs]",
        PANEL,
        metavar="N",
        setting="jobs",
    ),
    Opt(
        "qps",
        ("--qps",),
        float | None,
        "Requests per second at most, slowed down further while the API says 429; "
        "0 = no limit. [default: 5, setting qps]",
        PANEL,
        metavar="RATE",
        setting="qps",
    ),
    Opt(
        "format",
        ("--format",),
        str | None,
        "Batch file format; by default from the extension (.jsonl, .csv).",
        PANEL,
        metavar="jsonl|csv",
    ),
    Opt(
        "journal",
        ("--journal",),
        str | None,
        "Journal file. [default: OUTPUT_DIR/.volccli-journal.jsonl]",
        PANEL,
        metavar="PATH",
    ),
    Opt(
        "force",
        ("--force",),
        bool,
        "Redo jobs the journal says are done.",
        PANEL,
        default=False,
    ),
    Opt(
        "fail_fast",
        ("--fail-fast",),
        bool,
        "Start no new job after the first failure (jobs in flight finish).",
        PANEL,
        default=False,
    ),
    Opt(
        "keep_going",
        ("--keep-going",),
        bool,
        "Send the valid rows even when some are invalid (they are reported; exit 9).",
        PANEL,
        default=False,
    ),
)
# Options that make no sense for many jobs at once.
_LEFT_OUT = ("open", "print_curl")
_DEFAULTS_FROM_CLI = (
    "name",
    "on_exists",
    "count",
    "no_sidecar",
    "no_embed",
    "sets",
    "no_validate",
    "fit",
    "no_convert",
    "max_image_bytes",
    "max_image_side",
    "max_aspect",
)


def make(group: LazyGroup) -> Any:
    return command_from(group, "batch", make_command(), HELP, EPILOG)


# -o means something else for many jobs: one folder for all of them, never stdout.
_OWN_HELP = {
    "output_dir": (
        "Folder for the images and the journal; a row's output_dir is a folder inside it. "
        "Not '-': a batch writes files. [default: ., setting output_dir]"
    ),
}


def _options() -> tuple[Opt, ...]:
    groups = BATCH_OPTS + OUTPUT_OPTS + REQUEST_OPTS + IMAGE_OPTS + GLOBAL_OPTS
    return tuple(
        opt._replace(help=_OWN_HELP.get(opt.param, opt.help))
        for opt in groups
        if opt.param not in _LEFT_OUT
    )


def make_command() -> Callable[..., None]:
    params = [
        CONTEXT,
        parameter(
            "file",
            str,
            help="The batch file (.jsonl or .csv), or '-' for stdin.",
            argument=True,
            metavar="FILE|-",
            default=...,
        ),
    ]
    params += [opt_parameter(opt) for opt in _options()]
    return signature_command("batch", HELP, params, run_batch)


def run_batch(options: dict[str, Any]) -> None:
    merged, ui = begin(options)
    options.setdefault("print_curl", False)
    options.setdefault("open", False)
    with (
        reported(ui, json_errors=options["json"]),
        Session(ui, connection_flags(merged)) as session,
    ):
        code = _run(options, session, ui)
    if code:
        raise typer.Exit(code)


def _setting(options: dict[str, Any], session: Session, name: str) -> Any:
    value = options.get(name)
    return session.resolved.get(name) if value is None else value


def _run(options: dict[str, Any], session: Session, ui: UI) -> int:
    from ..batchfile import read_batch
    from ..build import Stdin, check_listing
    from ..errors import InputError
    from ..jobs import plan_batch
    from ..runner import FilterPolicy
    from ..tasks import PollPolicy

    check_listing(options)
    workers = int(session.resolved.pick("jobs", options.get("jobs")))
    qps = float(session.resolved.pick("qps", options.get("qps")))
    # Checked now: the runners are made only after the journal is created.
    PollPolicy(options["poll_interval"], timeout=options["wait_timeout"])
    FilterPolicy.parse(options["on_filtered"])
    out = _setting(options, session, "output_dir") or "."
    if out == "-":
        raise InputError(
            "a batch writes files: -o - (stdout) is for single commands", "give a folder with -o"
        )
    batch_out = Path(out).expanduser()
    stdin = Stdin()
    batch = read_batch(options["file"], options["format"], lambda: stdin.read("the batch FILE"))
    defaults = {name: options.get(name) for name in _DEFAULTS_FROM_CLI}
    defaults["output_dir"] = str(batch_out)
    notes: list[str] = []
    jobs, problems = plan_batch(batch, defaults, session.resolved, batch_out, stdin, notes)
    for note in dict.fromkeys(notes):
        ui.note(f"note: {note}")
    if len(problems) == 1 and not options["keep_going"]:
        # One bad row is one line, like any other bad input.
        raise InputError(
            f"{batch.label}:{problems[0].line}: {problems[0].message}; nothing was sent",
            "fix it, or use --keep-going to send the valid rows",
        )
    for problem in problems:
        ui.plain(f"volccli: error: {batch.label}:{problem.line}: {problem.message}")
    if problems and not options["keep_going"]:
        invalid = sum(1 + len(problem.also) for problem in problems)  # a clash names several
        raise InputError(
            f"{invalid} rows are invalid in {batch.label}; nothing was sent",
            "fix them, or use --keep-going to send the valid rows",
        )
    if options["dry_run"]:
        from .generate import show_requests

        show_requests([item.job for item in jobs], options, session, ui)
        return int(ExitCode.BATCH_FAILED) if problems else 0
    return _execute(batch, options, jobs, problems, session, ui, batch_out, workers, qps)


def _execute(
    batch: BatchFile,
    options: dict[str, Any],
    jobs: list[BatchJob],
    problems: list[Any],
    session: Session,
    ui: UI,
    batch_out: Path,
    workers: int,
    qps: float,
) -> int:
    from ..batch import Engine
    from ..batchreport import Reporter, Result, step_summary_path
    from ..errors import InputError
    from ..jobs import resume
    from ..journal import JOURNAL_NAME, Journal
    from ..output import ensure_folder, sweep_stale_temps
    from ..ratelimit import AdaptiveLimiter

    started = time.monotonic()
    journal_path = (
        Path(options["journal"]).expanduser() if options["journal"] else (batch_out / JOURNAL_NAME)
    )
    # First the credentials, then the journal: a refused key, or a --journal that must be
    # refused (another batch's, or not a journal at all), leaves no output folders behind.
    limiter = AdaptiveLimiter(qps, max_in_flight=workers)
    client = _client(session, limiter, workers)
    journal = Journal.open(journal_path, batch.label, batch.identity)
    try:
        for folder in dict.fromkeys(item.job.request.output.folder for item in jobs):
            if folder is not None:
                ensure_folder(folder)
        ensure_folder(batch_out)
        # The journal's lock is held: temp files of a killed earlier run can go.
        swept = sweep_stale_temps(batch_out)
        if swept:
            ui.detail(f"removed {swept} temp file(s) left by an interrupted run")
        resume(jobs, journal, force=options["force"])
        reporter = Reporter(
            ui,
            batch.label,
            json_lines=options["json"],
            null=options["null"],
            limiter_state=lambda: _limiter_state(limiter),
        )
        for problem in problems:
            for line in (problem.line, *problem.also):
                reporter.finished(
                    Result(line, "failed", error=InputError(problem.message), invalid=True),
                    ran=False,
                )
        leave = threading.Event()
        runner, fetcher = _runners(client, options, session, batch.label, leave)
        engine = Engine(
            runner, fetcher, journal, reporter, workers, options["fail_fast"], leave=leave
        )
        reporter.start(len(jobs))
        stopped: KeyboardInterrupt | None = None
        try:
            engine.run(jobs)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM, after the jobs in flight
            stopped = exc
        finally:
            reporter.stop()
    finally:
        journal.close()
    code = interrupt_exit(stopped)[1] if stopped else _exit_code(reporter, engine)
    summary = reporter.summary(
        elapsed=time.monotonic() - started,
        journal=str(journal_path),
        exit_code=code,
        abandoned=engine.abandoned,
    )
    if not ui.quiet or code:
        ui.plain(reporter.summary_text(summary))
    if options["json"]:
        print_json({"summary": summary})
    step = step_summary_path()
    if step is not None:
        reporter.step_summary(step, summary)
    if stopped is not None:
        ui.plain("volccli: run the same command again to finish the batch")
        raise stopped
    if engine.fatal is not None:
        ui.error(engine.fatal)
    elif reporter.stdout_closed:
        ui.warn(
            "stdout was closed by its reader, so no new jobs were started; "
            "run the same command again to finish the batch"
        )
    return code


def _client(session: Session, limiter: AdaptiveLimiter, workers: int) -> Any:
    from requests.adapters import HTTPAdapter

    client = session.client(limiter=limiter)
    # One kept-alive connection per worker instead of urllib3's default pool of 10.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, workers))
    client.session.mount("http://", adapter)
    client.session.mount("https://", adapter)
    return client


def _runners(
    client: Any, options: dict[str, Any], session: Session, label: str, leave: threading.Event
) -> tuple[Any, Any]:
    from ..runner import FilterPolicy, Runner, RunOptions
    from ..tasks import PollPolicy

    poll = PollPolicy(interval=options["poll_interval"], timeout=options["wait_timeout"])
    common = {
        "poll": poll,
        "on_filtered": FilterPolicy.parse(options["on_filtered"]),
        "download_timeout": float(session.resolved.get("timeout")),
        "leave": leave,
    }
    record = None
    if not options["no_log"]:
        record = partial(session.history().record, batch=label)
    runner = Runner(
        client, options=RunOptions(use_async=options["use_async"], **common), record=record
    )
    fetcher = Runner(client, options=RunOptions(use_async=True, **common), record=record)
    return runner, fetcher


def _limiter_state(limiter: AdaptiveLimiter) -> str:
    if not limiter.throttled:
        return ""
    count = limiter.throttled
    text = f"{count} rate-limit refusal{'' if count == 1 else 's'} from the API"
    if limiter.limited and limiter.rate < limiter.target:
        text += f", now {limiter.rate:.2g}/s"
    return text


def _exit_code(reporter: Reporter, engine: Any) -> int:
    if engine.fatal is not None:
        return int(engine.fatal.exit_code)
    if reporter.stdout_closed:
        return int(ExitCode.OUTPUT)
    counts = reporter.counts
    return int(ExitCode.BATCH_FAILED) if counts.failed or counts.invalid else 0
