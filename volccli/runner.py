"""One job end to end: body → request → answer → images on disk → sidecar → outcome.

Single commands and batches share this path; only how jobs are produced and reported
differs. ``plan`` is pure (a request expands into ``count`` jobs with their seeds and
identities); ``Runner.run`` does the I/O.
"""

import hashlib
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

from . import __version__, output, recipe
from .client import ApiClient, Envelope, Event, no_event
from .errors import AuditError, InputError, NetworkError, OutputError, VolccliError
from .images import verify_image_file
from .kinds import SEED_MAX, Kind
from .payload import (
    Inputs,
    build_body,
    describe_body,
    encode_body,
    field_values,
    image_refs,
    request_identity,
)
from .results import RawResult, decode_base64, download, returned_images
from .tasks import Left, PollPolicy, split_body, submit, wait

Status = Literal["ok", "skipped", "filtered", "failed", "left"]
# The most images one command (or one batch row) asks for: each is a request, planned up
# front, and the count is usually a typo or a missing unit beyond this.
MAX_COUNT = 10_000
PROMPT_FIELDS = ("prompt", "positive_prompt", "custom_prompt")


@dataclass
class Request:
    """One command's worth of work; expands into ``count`` jobs."""

    kind: Kind
    req_key: str
    values: dict[str, Any]  # given flag values by field name (None = not given)
    inputs: Inputs = field(default_factory=Inputs)
    overrides: dict[str, Any] = field(default_factory=dict)  # --set
    base: dict[str, Any] = field(default_factory=dict)  # --body
    action: str = ""
    version: str = ""
    count: int = 1
    output: "output.OutputSpec" = field(default_factory=lambda: output.OutputSpec(Path(".")))
    validate: bool = True
    row: int | None = None
    name: str = ""

    @property
    def command(self) -> str:
        return self.kind.command if self.kind.req_key else self.req_key


class Job(NamedTuple):
    request: Request
    index: int
    body: dict[str, Any]
    identity: str

    @property
    def seed(self) -> int | None:
        seed = self.body.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def plan(request: Request, rng: random.Random | None = None) -> list[Job]:
    """Expand a request into jobs: seed -1 draws distinct seeds, a fixed seed counts up.

    The identity hashes the request as asked (seed -1 stays -1) plus the job's index, so
    a rerun recognises a job whatever seed it drew the first time.
    """
    if request.count < 1:
        raise InputError(f"-n/--count {request.count} must be at least 1", "use -n 1 or more")
    if request.count > MAX_COUNT:
        raise InputError(
            f"-n/--count {request.count} is above {MAX_COUNT:,}, the most images one command makes",
            "run several commands, or a batch file with a count per row",
        )
    rng = rng or random.SystemRandom()
    values = field_values(request.kind, request.values, validate=request.validate)
    template = build_body(
        request.kind,
        request.req_key,
        values,
        request.inputs,
        overrides=request.overrides,
        base=request.base,
        validate=request.validate,
    )
    asked = template.get("seed")
    if (
        request.validate
        and isinstance(asked, int)
        and not isinstance(asked, bool)
        and asked + request.count - 1 > SEED_MAX
    ):
        # A fixed seed counts up by one per image: the last ones would be refused, after
        # the first ones were paid for.
        raise InputError(
            f"--seed {asked} with -n {request.count} would send seeds up to "
            f"{asked + request.count - 1}, above the largest seed {SEED_MAX}",
            f"use a seed of at most {SEED_MAX - request.count + 1}, or -1 for random seeds",
        )
    drawn: set[int] = set()
    jobs = []
    for index in range(request.count):
        body = dict(template)
        if isinstance(asked, int) and not isinstance(asked, bool):
            if asked == -1:
                seed = rng.randint(0, SEED_MAX)
                while seed in drawn:
                    seed = rng.randint(0, SEED_MAX)
                drawn.add(seed)
                body["seed"] = seed
            else:
                body["seed"] = asked + index
        identity = request_identity(
            template,
            extra={
                "action": request.action or request.kind.action,
                "version": request.version or request.kind.version,
                "index": index,
            },
        )
        jobs.append(Job(request, index, body, identity))
    _refuse_shared_names(request, jobs)
    return jobs


def _refuse_shared_names(request: Request, jobs: list[Job]) -> None:
    """Two images of one command must not get one name unless a -N suffix keeps them apart:
    the template may hold {seed}, but a length like {seed:1} or the 200-byte cut of a
    long name can still make two names equal, and one paid image would replace the other."""
    spec = request.output
    if len(jobs) < 2 or spec.on_exists == "suffix":
        return
    for clash in shared_names(jobs)[:1]:
        first, second = clash.jobs[:2]
        raise InputError(
            f"--name {spec.template!r} gives images {first.index + 1} and {second.index + 1} "
            f"the same name {clash.name}.png, which --on-exists {spec.on_exists} cannot keep "
            "apart",
            "keep {seed} or {index} whole and the name short, or use --on-exists suffix",
        )


class SharedName(NamedTuple):
    target: Path  # the file, resolved
    name: str  # its name as rendered, relative to the folder of ``jobs[0]``
    jobs: list[Job]


def shared_names(jobs: Iterable[Job], now: datetime | None = None) -> list[SharedName]:
    """Jobs (of one command or of a whole batch) whose images would get one file name that
    no -N suffix keeps apart: a job under --on-exists suffix counts only beside one that
    is not, whose image would replace its own, or be skipped or fail for it.

    Only names known before sending are compared. {request_id} and {n} need the answer
    (request ids differ from request to request). A seed the server draws is unknown
    too: it renders as nothing here, so names that only such a seed could tell apart
    are refused rather than left to chance (the server may not even report one)."""
    now = now or datetime.now()
    groups: dict[Path, SharedName] = {}
    for job in jobs:
        spec = job.request.output
        if spec.folder is None or needs_answer(spec.template):
            continue
        name = output.render_name(spec.template, name_values(job), now)
        try:
            target = output.target_for(spec.folder, name, ".png")
        except InputError:  # refused for this job when it runs, before it is sent
            continue
        groups.setdefault(target, SharedName(target, name, [])).jobs.append(job)
    return [
        group
        for group in groups.values()
        if len(group.jobs) > 1 and any(j.request.output.on_exists != "suffix" for j in group.jobs)
    ]


def prompt_of(body: Mapping[str, Any]) -> str:
    for name in PROMPT_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def name_values(job: Job) -> dict[str, Any]:
    request = job.request
    first = next((img for img in request.inputs.all() if img.stem), None)
    return {
        "command": request.command,
        "prompt": prompt_of(job.body),
        "seed": job.seed,
        "index": job.index,
        "req_key": request.req_key,
        "hash": job.identity[:8],
        "input": first.stem if first is not None else "",
        "row": request.row,
        "name": request.name,
    }


def needs_answer(template: str) -> bool:
    return any(token in output.RESPONSE_TOKENS for token, _ in output.template_fields(template))


class FilterPolicy(NamedTuple):
    """What a post-generation audit rejection (50511, 50519) does."""

    action: Literal["fail", "skip", "reseed"] = "fail"
    attempts: int = 0

    @classmethod
    def parse(cls, text: str) -> "FilterPolicy":
        name, _, count = text.partition(":")
        if name in ("fail", "skip") and not count:
            return cls(name)  # type: ignore[arg-type]  # checked just above
        if name == "reseed" and count.isdigit() and int(count) > 0:
            return cls("reseed", int(count))
        raise InputError(
            f"--on-filtered {text!r} is not fail, skip or reseed:N",
            "write e.g. --on-filtered reseed:3",
        )


class RunOptions(NamedTuple):
    use_async: bool = False
    poll: PollPolicy = PollPolicy()
    on_filtered: FilterPolicy = FilterPolicy()
    download_timeout: float = 120.0
    # Set when a batch is interrupted: a submitted task is no longer waited for (its id
    # is in the journal, so the next run fetches it); the job ends as "left".
    leave: threading.Event | None = None


class Written(NamedTuple):
    path: Path | None  # None when written to stdout
    sha256: str
    width: int
    height: int
    format: str
    size: int


@dataclass
class Outcome:
    job: Job
    status: Status
    images: list[Written] = field(default_factory=list)
    request_id: str = ""
    seed: int | None = None
    elapsed: float = 0.0
    attempts: int = 0
    retries: list[str] = field(default_factory=list)
    error: VolccliError | None = None
    task_id: str = ""
    started: str = ""
    finished: str = ""
    reseeds: int = 0
    existing: Path | None = None  # skipped: the file that already had the name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Runner:
    def __init__(
        self,
        client: ApiClient,
        *,
        options: RunOptions | None = None,
        record: Callable[[Outcome], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.options = options or RunOptions()
        self.record = record
        self.rng = rng or random.SystemRandom()
        self._ready_folders: set[Path] = set()  # subfolders from --name, proven writable
        # The outermost folders those subfolders made, for a command to remove when it
        # ends with nothing written in them.
        self.made_folders: list[Path] = []

    def run(
        self,
        job: Job,
        *,
        on_event: Event = no_event,
        task_id: str = "",
        on_task: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Run one job; never raises a VolccliError (it is in the outcome)."""
        outcome = Outcome(job, "failed", seed=job.seed, started=_now(), task_id=task_id)
        try:
            self._run(job, outcome, on_event, on_task)
        except Left:
            outcome.status = "left"
        except VolccliError as error:
            outcome.status = "failed"
            outcome.error = error
            outcome.request_id = outcome.request_id or error.request_id
        finally:
            outcome.finished = _now()
            if self.record is not None:
                self.record(outcome)
        return outcome

    def _run(
        self, job: Job, outcome: Outcome, on_event: Event, on_task: Callable[[str], None] | None
    ) -> None:
        spec = job.request.output
        # Only skip and fail can decide before the request is paid for; overwrite can
        # refuse a name it must not replace. A subfolder the name makes ("ro/{seed}")
        # must be writable before the image is paid for, too.
        decides_early = spec.on_exists in ("skip", "fail", "overwrite")
        subfolder = "/" in spec.template or "\\" in spec.template
        if (
            (decides_early or subfolder)
            and spec.folder is not None
            and not needs_answer(spec.template)
        ):
            target = output.target_for(
                spec.folder, output.render_name(spec.template, name_values(job)), ".png"
            )
            if subfolder and target.parent not in self._ready_folders:
                made = output.ensure_folder(target.parent)
                if made is not None:
                    self.made_folders.append(made)
                self._ready_folders.add(target.parent)
            if decides_early and output.precheck(target, spec.on_exists, spec.sidecar) == "skip":
                outcome.status = "skipped"
                outcome.existing = target
                return
        started = time.monotonic()
        envelope = self._generate(job, outcome, on_event, on_task)
        outcome.elapsed = time.monotonic() - started
        if envelope is None:  # filtered by the audit, and --on-filtered skip
            return
        outcome.request_id = envelope.request_id
        outcome.attempts = envelope.attempts
        outcome.retries = envelope.retries
        reported = envelope.data.get("seed")
        if outcome.seed in (None, -1) and isinstance(reported, int):
            outcome.seed = reported
        try:
            outcome.images = self._write(job, outcome, envelope)
        except (NetworkError, OutputError) as error:
            if outcome.task_id:  # a done task's result can be fetched again, unbilled
                fetch = f"`volccli task wait {job.request.req_key} {outcome.task_id}`"
                error.hint = (
                    f"fetch the images again with {fetch}"
                    if isinstance(error, NetworkError)
                    else f"{error.hint}, then fetch the images with {fetch}"
                )
            raise
        outcome.status = "ok" if outcome.images else "skipped"

    def _generate(
        self, job: Job, outcome: Outcome, on_event: Event, on_task: Callable[[str], None] | None
    ) -> Envelope | None:
        """Send, applying --on-filtered; None when a filtered result is skipped."""
        body = job.body
        policy = self.options.on_filtered
        while True:
            try:
                return self._send(job, body, outcome, on_event, on_task)
            except AuditError as error:
                if error.retry != "filtered" or policy.action == "fail":
                    raise
                if policy.action == "skip":
                    outcome.status = "filtered"
                    outcome.error = error
                    outcome.request_id = error.request_id
                    return None
                if outcome.reseeds >= policy.attempts:
                    raise
                outcome.reseeds += 1
                body = {**body, "seed": self.rng.randint(0, SEED_MAX)}
                outcome.seed = body["seed"]
                outcome.task_id = ""
                on_event(
                    "retry",
                    {
                        "attempt": outcome.reseeds,
                        "delay": 0.0,
                        "reason": f"{error.code} filtered; new seed {body['seed']}",
                    },
                )

    def _send(
        self,
        job: Job,
        body: dict[str, Any],
        outcome: Outcome,
        on_event: Event,
        on_task: Callable[[str], None] | None,
    ) -> Envelope:
        request = job.request
        if not self.options.use_async:
            action = request.action or request.kind.action
            version = request.version or request.kind.version
            envelope = self.client.call(action, version, encode_body(body), on_event=on_event)
            on_event("request_id", {"request_id": envelope.request_id})
            return envelope
        submit_body, req_json = split_body(body)
        if not outcome.task_id:
            outcome.task_id = submit(self.client, submit_body, on_event=on_event)
            if on_task is not None:
                on_task(outcome.task_id)
        on_event("status", {"status": f"task {outcome.task_id} submitted"})
        envelope = wait(
            self.client,
            request.req_key,
            outcome.task_id,
            req_json,
            policy=self.options.poll,
            on_event=on_event,
            sleep=self._poll_sleep,
        )
        on_event("request_id", {"request_id": envelope.request_id})
        return envelope

    def _poll_sleep(self, seconds: float) -> None:
        """The wait between polls, cut short by an interrupted batch."""
        leave = self.options.leave
        if leave is None:
            time.sleep(seconds)
        elif leave.wait(seconds):
            raise Left

    # --- results -----------------------------------------------------------------

    def _write(self, job: Job, outcome: Outcome, envelope: Envelope) -> list[Written]:
        spec = job.request.output
        encoded, urls = returned_images(envelope.data)
        if not encoded and not urls:
            raise NetworkError(
                "the answer carries no images",
                "retry later; contact support with the request id",
                request_id=envelope.request_id,
                maybe_billed=True,
            )
        if spec.folder is None and len(encoded) + len(urls) > 1:
            raise OutputError(
                "-o - takes a single image but the answer has several",
                "write to a folder with -o DIR",
            )
        # A scratch folder only for downloads that have no output folder (-o -): making
        # and removing one for every job of a batch cost more CPU than its journal.
        scratch: AbstractContextManager[str] = (
            nullcontext(str(spec.folder))
            if spec.folder is not None
            else tempfile.TemporaryDirectory(prefix="volccli-")
        )
        with scratch as where:
            folder = Path(where)
            raws: list[RawResult] = decode_base64(encoded)
            try:
                if not raws:
                    for index, url in enumerate(urls):
                        raws.append(
                            download(
                                url,
                                index,
                                folder,
                                timeout=self.options.download_timeout,
                                connect_timeout=self.client.connection.connect_timeout,
                            )
                        )
                return [self._store(job, outcome, envelope, raw) for raw in raws]
            finally:
                for raw in raws:
                    raw.discard()

    def _store(self, job: Job, outcome: Outcome, envelope: Envelope, raw: RawResult) -> Written:
        """Verify one image, put the recipe inside, place it without clobbering, add its sidecar."""
        spec = job.request.output
        ext = raw.ext or ".png"
        the_recipe = build_recipe(job, outcome, envelope, raw.index)
        if raw.data is not None:
            # A decoded answer is checked and hashed in memory, then written once; the
            # recipe chunk volccli adds is well-formed by construction.
            fmt, width, height = _verified(raw.data)
            parts = recipe.embed_parts(raw.data, the_recipe) if spec.embed else (raw.data,)
            digest = hashlib.sha256()
            for part in parts:
                digest.update(part)
            sha, size = digest.hexdigest(), sum(len(part) for part in parts)
            if spec.folder is None:
                for part in parts:
                    sys.stdout.buffer.write(part)
                sys.stdout.buffer.flush()
                return Written(None, sha, width, height, fmt, size)
            tmp = output.write_temp(spec.folder, parts)
        else:  # a download, already in a temp file
            tmp = raw.take()
        try:
            if raw.data is None:
                fmt, width, height = _verified(tmp)
                if spec.embed:
                    recipe.embed_file(tmp, the_recipe)
                sha, size = RawResult(raw.index, path=tmp).sha256(), tmp.stat().st_size
            if spec.folder is None:
                with tmp.open("rb") as handle:
                    shutil.copyfileobj(handle, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                return Written(None, sha, width, height, fmt, size)
            values = {
                **name_values(job),
                "seed": outcome.seed,
                "request_id": outcome.request_id,
                "n": raw.index,
            }
            target = output.target_for(spec.folder, output.render_name(spec.template, values), ext)
            if spec.on_exists == "overwrite":
                output.check_replaceable(target, spec.sidecar)
            placed = output.place(tmp, target, spec.on_exists)
        finally:
            tmp.unlink(missing_ok=True)
        if placed is not None and not spec.sidecar and spec.on_exists == "overwrite":
            output.drop_replaced_recipe(placed)
        if placed is not None and spec.sidecar:
            file_info = {
                "name": placed.name,
                "sha256": sha,
                "width": width,
                "height": height,
                "format": fmt,
                "bytes": size,
            }
            output.write_text_atomic(
                output.sidecar_path(placed), _dumps({**the_recipe, "file": file_info})
            )
        return Written(placed, sha, width, height, fmt, size)


def _verified(source: Path | bytes) -> tuple[str, int, int]:
    try:
        return verify_image_file(source)
    except ValueError as exc:
        raise NetworkError(
            f"the returned image does not decode ({exc})",
            "retry later; the request was probably billed",
            maybe_billed=True,
        ) from None


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=2) + "\n"


def _recorded_inputs(job: Job) -> list[dict[str, object]]:
    """Each input image: those of the image options, then any other the body carries
    (base64 given in --body or a row, or a rerun's inputs read back from its recipe)."""
    images = job.request.inputs.all()
    given = {id(image) for image in images}
    images += [ref.image for ref in image_refs(job.body) if id(ref.image) not in given]
    return [image.describe() for image in images]


def build_recipe(job: Job, outcome: Outcome, envelope: Envelope, index: int) -> dict[str, Any]:
    """Everything needed to understand or repeat the image; never image data or secrets."""
    data = envelope.data
    body = {**job.body, "seed": outcome.seed} if outcome.seed is not None else job.body
    out: dict[str, Any] = {
        "schema": recipe.SCHEMA,
        "volccli": __version__,
        "command": job.request.command,
        "req_key": job.request.req_key,
        "action": job.request.action or job.request.kind.action,
        "version": job.request.version or job.request.kind.version,
        "body": describe_body(body),
        "inputs": _recorded_inputs(job),
        "seed": outcome.seed,
        "index": job.index,
        "image_index": index,
        "request_hash": job.identity,
        "request_id": envelope.request_id,
        "time_elapsed": envelope.body.get("time_elapsed"),
        "started": outcome.started,
        "finished": _now(),
    }
    if outcome.task_id:
        out["task_id"] = outcome.task_id
    for key in ("rephraser_result", "predict_tags_result", "vlm_result", "pe_result", "llm_result"):
        if data.get(key):
            out[key] = data[key]
    return out
