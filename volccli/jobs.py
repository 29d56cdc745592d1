"""Batch rows → checked requests → jobs, and what a rerun does with each job.

A row names a command (or a req_key), its fields under the flag names or the body
names, its images (relative to the batch file), and optionally ``name``, ``output_dir``
and ``count``. Each row goes through ``build.build_request`` and ``runner.plan`` exactly
like a single command, so a batch checks everything a command checks, and all of it
before the first request is sent. Two differences: a row's prompt is sent as written
('-' and '@FILE' are command-line conventions; ``prompt_file`` reads a file beside the
batch file), and numbers or true/false may be written as text in JSON as in CSV.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from . import output
from .batchfile import BatchFile, Problem, Row
from .build import TEXT_FIELDS, Stdin, build_request, read_file_text
from .config import Resolved
from .errors import InputError, VolccliError
from .journal import Journal, file_sha256
from .kinds import CALL, KINDS, Field, ImageSlot, Kind, kind_for
from .runner import Job, name_values, needs_answer, plan, shared_names

COMMANDS: Final = (*KINDS, "call")
# Options a row may set for itself, over the command line's.
ROW_OPTIONS: Final = ("on_exists", "fit", "no_validate")
_BODY_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# Numbers written as text (every CSV value, and JSON "2"): plain ASCII notation only, so
# that "1_000", "٣" or "nan", which Python's int() and float() would take, are refused.
_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A row key NAME_file reads the text field NAME from a file (prompt_file, negative_prompt_file).
FILE_SUFFIX: Final = "_file"


@dataclass
class BatchJob:
    job: Job
    key: str  # the journal's name for it: identity and occurrence
    line: int
    name: str
    task_id: str = ""  # a task submitted by an earlier run, to fetch instead of resubmit
    done: list[Path] = field(default_factory=list)  # outputs of an earlier run


# --- a row's meaning ------------------------------------------------------------------


def row_kind(values: Mapping[str, Any]) -> tuple[Kind, str]:
    """The kind of a row and the req_key for `call` rows."""
    command = values.get("command")
    req_key = values.get("req_key")
    if command is not None and not isinstance(command, str):
        raise InputError("command must be a string", f"use one of {', '.join(COMMANDS)}")
    if req_key is not None and (not isinstance(req_key, str) or not req_key.strip()):
        raise InputError("req_key must be a non-empty string", 'e.g. "req_key": "jimeng_i2i_v30"')
    if command:
        command = command.strip()
        if command == "call":
            if not req_key:
                raise InputError(
                    "command call needs a req_key", 'add e.g. "req_key": "jimeng_i2i_v30"'
                )
            return CALL, req_key.strip()
        kind = KINDS.get(command)
        if kind is None:
            raise InputError(f"unknown command {command!r}", f"use one of {', '.join(COMMANDS)}")
        if req_key and req_key.strip() != kind.req_key:
            raise InputError(
                f"command {command} sends req_key {kind.req_key}, not {req_key}",
                "drop the command to call another req_key (or use command call)",
            )
        return kind, ""
    if req_key:
        kind = kind_for(req_key.strip())
        return (kind, "") if kind is not None else (CALL, req_key.strip())
    raise InputError(
        "the row has no command or req_key",
        f'add e.g. "command": "txt2img" ({", ".join(COMMANDS)})',
    )


_LOOKUPS: dict[int, tuple[Kind, dict[str, Field | ImageSlot]]] = {}


def _lookup(kind: Kind) -> dict[str, Field | ImageSlot]:
    """Every name a row may use for a field or an image slot of this kind.

    Built once per kind (kinds are constants): a batch asks for every row.
    """
    cached = _LOOKUPS.get(id(kind))
    if cached is None or cached[0] is not kind:
        cached = _LOOKUPS[id(kind)] = (kind, _names_of(kind))
    return cached[1]


def _names_of(kind: Kind) -> dict[str, Field | ImageSlot]:
    names: dict[str, Field | ImageSlot] = {}
    for slot in kind.slots:
        for name in (slot.name, slot.option, slot.option.replace("-", "_")):
            names[name] = slot
    for f in kind.fields:
        for name in (f.param, f.option, f.name):
            names.setdefault(name, f)
    return names


def _int(value: Any) -> int:
    """A whole number from JSON (2, 2.0) or text ("2", " 2 ", "2.0"); ValueError if not."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip().split(".")[0])
    raise ValueError(value)


def _float(value: Any) -> float:
    """A finite number from JSON or text; ValueError if not (1e999 is not finite)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        raise ValueError(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _typed(f: Field, value: Any, key: str) -> Any:
    """A row value as the field's type: CSV text, or JSON of a near type.

    Numbers and true/false are read the same from JSON and from text, so a JSON row may
    write "steps": "20" as a CSV must.
    """
    if f.choices is not None:
        if isinstance(value, str) and value not in f.choices:
            try:
                parsed = json.loads(value)
            except ValueError:
                return value
            return parsed if parsed in f.choices.values() else value
        return value
    text = value.strip() if isinstance(value, str) else None
    try:
        if f.type == "bool":
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in (*_TRUE, *_FALSE):
                return text.lower() in _TRUE
            raise ValueError
        if f.type == "int":
            return _int(value)
        if f.type == "float":
            return _float(value)
    except ValueError:
        wanted = {"bool": "true or false", "int": "an integer", "float": "a number"}[f.type]
        raise InputError(f"{key} {value!r} is not {wanted}", f"give {key} as {wanted}") from None
    if not isinstance(value, str):
        raise InputError(f"{key} {value!r} is not text", f"give {key} as a string")
    return value


def _text(value: Any, key: str) -> str:
    """A prompt as the row writes it: text, sent as is.

    On the command line a prompt of '-' reads stdin and '@FILE' reads a file; a batch
    row's text is data, not an argument, so "@home" is the prompt "@home" (files are
    asked for explicitly, with NAME_file).
    """
    if not isinstance(value, str):
        raise InputError(f"{key} {value!r} is not text", f"give {key} as a string")
    if not value.strip():
        raise InputError(f"{key} is empty", 'give some text, e.g. "a red bicycle"')
    return value


def _text_file(value: Any, key: str, base_dir: Path) -> str:
    """The text of a NAME_file value: a file in the batch file's folder (or under it).

    Any text file is sent as the prompt, so a batch file may only name its own files,
    not e.g. ~/.ssh/id_rsa: no absolute path, '~' or '..', nor a link leading out.
    """
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{key} must be a file name", f'e.g. "{key}": "prompts/fox.txt"')
    outside = InputError(
        f"{key} {value!r} is outside the batch file's folder ({base_dir})",
        "keep the text file beside the batch file (or in a folder under it) and give "
        "its path relative to the batch file",
    )
    if output.leaves_folder(value):
        raise outside
    path = base_dir / value
    try:
        inside = path.resolve().is_relative_to(base_dir.resolve())
    except (OSError, RuntimeError):  # a link loop: reading it fails the same way below
        inside = True
    if not inside:
        raise outside
    text = read_file_text(str(path), key, given=value)
    return _text(text, f"{key} {value}")


def _images(slot: ImageSlot, value: Any, key: str, text: bool) -> str | list[str]:
    if text and isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise InputError(f"{key} is not a JSON list", 'write e.g. ["a.png", "b.png"]') from None
    if isinstance(value, str):
        return [value] if slot.multiple else value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if not slot.multiple and len(value) != 1:
            raise InputError(f"{key} takes one image, not {len(value)}", "give a single path")
        return value if slot.multiple else value[0]
    raise InputError(f"{key} must be a path or URL (or a list of them)", 'e.g. "image": "in.png"')


class RowPlan(NamedTuple):
    kind: Kind
    options: dict[str, Any]  # for build_request, with literal_text: prompts as written
    name: str  # the row's name column


def row_options(
    row: Row, defaults: Mapping[str, Any], batch_out: Path, base_dir: Path | None = None
) -> RowPlan:
    """What one row asks for; ``base_dir`` is where its relative file names start."""
    values = row.values
    kind, req_key = row_kind(values)
    options = dict(defaults)
    options["req_key"] = req_key or None
    sets = list(defaults.get("sets") or [])
    names = _lookup(kind)
    # Which key set each field or image: two names for one thing (steps and ddim_steps,
    # prompt and prompt_file) would otherwise leave the last one winning in silence.
    given: dict[str, str] = {}

    def claim(target: str, key: str) -> None:
        earlier = given.setdefault(target, key)
        if earlier != key:
            # steps and ddim_steps are two names of one field; prompt_file gives prompt.
            from_file = earlier.endswith("_file") or key.endswith("_file")
            what = f"both give {target}" if from_file else "name the same field"
            raise InputError(f"{earlier} and {key} {what}", f"keep one of {earlier} and {key}")

    for key, value in values.items():
        if key in ("command", "req_key") or value is None:
            continue
        if key == "name":
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InputError("name must be text", 'e.g. "name": "hero-banner"')
            continue
        if key == "output_dir":
            if not isinstance(value, str) or not value.strip():
                raise InputError("output_dir must be a folder name", 'e.g. "output_dir": "banners"')
            # A row's folder stays inside -o: no absolute path, no home folder, no '..'.
            if output.leaves_folder(value):
                raise InputError(
                    f"output_dir {value!r} is outside the output folder",
                    'give a folder inside -o, e.g. "output_dir": "banners"',
                )
            options["output_dir"] = str(batch_out / value)
            continue
        if key == "count":
            try:
                count = _int(value)
            except ValueError:
                count = 0
            if count < 1:
                raise InputError(f"count {value!r} is not a whole number of at least 1", "e.g. 2")
            options["count"] = count
            continue
        if key in ("action", "version"):
            if kind is not CALL:
                raise InputError(f"{key} is only for call rows", "drop it, or use command call")
            options[key] = str(value)
            continue
        if key == "set":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise InputError("set must be a list of key=value strings", 'e.g. ["scale=0.7"]')
            sets += items
            continue
        if key in ROW_OPTIONS:
            options[key] = _option(key, value)
            continue
        target = names.get(key)
        from_file = None
        if target is None and key.endswith(FILE_SUFFIX):
            from_file = names.get(key.removesuffix(FILE_SUFFIX))
            target = from_file if _is_text(from_file) else None
        if isinstance(target, ImageSlot):
            claim(target.name, key)
            options[target.name] = _images(target, value, key, row.text)
        elif isinstance(target, Field) and target.name in TEXT_FIELDS:
            claim(target.name, key)
            if from_file is not None:
                text = _text_file(value, key, base_dir or Path.cwd())
            else:
                text = _text(value, key)
            options[target.param] = text
        elif target is not None:
            claim(target.name, key)
            options[target.param] = _typed(target, value, key)
        elif _BODY_KEY.match(key):
            # Any other name is a body field, exactly like --set KEY=VALUE.
            sets.append(f"{key}={value}" if row.text else f"{key}={json.dumps(value)}")
        else:
            raise InputError(
                f"{key!r} is neither an option of {kind.command} nor a body field name",
                "check the column or key name",
            )
    options["sets"] = sets
    name = values.get("name")
    return RowPlan(kind, options, "" if name is None else str(name))


def _is_text(target: Field | ImageSlot | None) -> bool:
    return isinstance(target, Field) and target.name in TEXT_FIELDS


def _option(key: str, value: Any) -> Any:
    if key == "on_exists":
        return str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise InputError(f"{key} {value!r} is not true or false", f"give {key} as true or false")


# --- the whole file -------------------------------------------------------------------


def row_name_template(count: int) -> str:
    """The file name of a row that has a ``name`` when no --name (flag or profile) is set.

    A row's name is what its author wants the file called: ``hero.png``, or
    ``hero_0.png``, ``hero_1.png`` … when the row makes several images.
    """
    return "{name}" if count == 1 else "{name}_{index}"


def plan_batch(
    batch: BatchFile,
    defaults: Mapping[str, Any],
    resolved: Resolved,
    batch_out: Path,
    stdin: Stdin,
    notes: list[str],
) -> tuple[list[BatchJob], list[Problem]]:
    """Every row checked and expanded into jobs; the problems of the others, by line."""
    problems = list(batch.problems)
    jobs: list[BatchJob] = []
    seen: dict[str, int] = {}
    for row in batch.rows:
        try:
            kind, options, name = row_options(row, defaults, batch_out, batch.base_dir)
            if name and not options.get("name") and not resolved.get("name"):
                options["name"] = row_name_template(int(options.get("count") or 1))
            request = build_request(
                kind,
                options,
                resolved,
                stdin=stdin,
                base_dir=batch.base_dir,
                notes=notes,
                literal_text=True,
            )
            request.row = row.line
            request.name = name
            planned = plan(request)
        except VolccliError as error:
            hint = f"; {error.hint}" if error.hint else ""
            problems.append(Problem(row.line, error.message + hint))
            continue
        for job in planned:
            # Identical rows are separate jobs: the k-th copy of an identity is its own job.
            occurrence = seen.get(job.identity, 0)
            seen[job.identity] = occurrence + 1
            jobs.append(BatchJob(job, f"{job.identity}#{occurrence}", row.line, name))
    clashes = _shared_names(jobs, batch.label)
    if clashes:
        # A row is sent whole or not at all: every job of a row in a clash stays home.
        refused = {line for problem in clashes for line in (problem.line, *problem.also)}
        jobs = [item for item in jobs if item.line not in refused]
        problems += clashes
    problems.sort(key=lambda problem: problem.line)
    return jobs, problems


_MAX_NAMED_ROWS: Final = 5  # a clash message names this many other rows, then counts


def _shared_names(jobs: list[BatchJob], label: str) -> list[Problem]:
    """One problem per file that several rows would write and no -N suffix keeps apart.

    plan() already refused this within each row (its count); across rows it is the same
    rule (runner.shared_names): under --on-exists overwrite one paid image would replace
    another, under skip or fail the later ones would be paid for and thrown away, and a
    rerun could not tell whose the file is, so it would pay again. Nothing is sent.
    """
    if all(item.job.request.output.on_exists == "suffix" for item in jobs):
        return []  # each image gets a name of its own: the common case, and a quick one
    line_of = {id(item.job): item.line for item in jobs}
    problems: list[Problem] = []
    covered: set[int] = set()
    for clash in shared_names(item.job for item in jobs):
        first, *others = sorted({line_of[id(job)] for job in clash.jobs})
        spec = clash.jobs[0].request.output
        shown = spec.folder / f"{clash.name}.png" if spec.folder is not None else clash.name
        policies = sorted({job.request.output.on_exists for job in clash.jobs} - {"suffix"})
        why = ""
        if any(job.seed is None and "seed" in _tokens(job) for job in clash.jobs):
            why = " (their seeds are drawn by the server, so {seed} is not known before sending)"
        by_name = any("name" in _tokens(job) for job in clash.jobs)
        fix = "give each of these rows a name of its own" if by_name else "add {row} to --name"
        problems.append(
            Problem(
                first,
                f"{_rows(label, others)} {shown}, which --on-exists {' and '.join(policies)} "
                f"cannot keep apart{why}; {fix}, or use --on-exists suffix to keep every image",
                also=tuple(line for line in others if line not in covered),
            )
        )
        covered.update((first, *others))
    return problems


def _rows(label: str, others: list[int]) -> str:
    """'this row and jobs.jsonl:4 would both write', for the message of a clash."""
    if not others:  # one row's own images: plan() refuses those first
        return "the images of this row would all be written to"
    named = [f"{label}:{line}" for line in others[:_MAX_NAMED_ROWS]]
    if len(others) > _MAX_NAMED_ROWS:
        named.append(f"{len(others) - _MAX_NAMED_ROWS} other rows")
    if len(named) == 1:
        return f"this row and {named[0]} would both write"
    return f"this row, {', '.join(named[:-1])} and {named[-1]} would all write"


def _tokens(job: Job) -> set[str]:
    return {token for token, _ in output.template_fields(job.request.output.template)}


# --- resume ----------------------------------------------------------------------------


def resume(jobs: list[BatchJob], journal: Journal, *, force: bool) -> None:
    """Mark what an earlier run finished or submitted; reuse the seeds it drew."""
    claimed = journal.claimed()
    for item in jobs:
        state = journal.state(item.key)
        if not state.started:
            continue
        if state.seed is not None and item.job.seed != state.seed:
            # The seed the earlier run drew: same name on disk, same image.
            item.job = item.job._replace(body={**item.job.body, "seed": state.seed})
        if not force:
            finished = journal.finished(item.key)
            if finished is not None:
                item.done = finished
                _report_seed(item, finished)
                continue
        if state.task_id:
            item.task_id = state.task_id
            continue
        if state.outputs is None:
            adopted = written_earlier(item.job, claimed)
            if adopted:
                journal.done(item.key, adopted)
                claimed.update(str(path) for path, _ in adopted)
                item.done = [path for path, _ in adopted]
                _report_seed(item, item.done)


def _report_seed(item: BatchJob, outputs: list[Path]) -> None:
    """A job done earlier reports the seed its image was made with. The journal has the
    seeds the client drew; one the server drew (a row whose body has no seed) is only in
    the image's recipe. The job is not sent again, so its body may carry it."""
    if item.job.seed is not None or not outputs:
        return
    from .recipe import read_recipe

    try:
        found, _where = read_recipe(outputs[0])
    except (OSError, ValueError):
        return
    seed = found.get("seed") if found is not None else None
    if isinstance(seed, int) and not isinstance(seed, bool):
        item.job = item.job._replace(body={**item.job.body, "seed": seed})


def written_earlier(job: Job, claimed: set[str]) -> list[tuple[Path, str]]:
    """An image of this very job that a killed run wrote but did not get to journal.

    Its recipe (sidecar, or the copy inside the file) names the job's request hash,
    index and seed; without this a rerun would pay again and leave a second copy.
    """
    from .recipe import read_recipe

    spec = job.request.output
    if spec.folder is None or needs_answer(spec.template):
        return []
    try:
        target = output.target_for(
            spec.folder, output.render_name(spec.template, name_values(job)), ".png"
        )
    except InputError:
        return []
    for candidate in output.candidates(target):
        if not output.taken(candidate):
            return []
        if str(candidate) in claimed or not candidate.is_file():
            continue
        try:
            found, _where = read_recipe(candidate)
            sha = file_sha256(candidate)
        except (OSError, ValueError):
            continue
        if (
            found is not None
            and found.get("request_hash") == job.identity
            and found.get("index") == job.index
            # No seed in the body: the server drew one, and the recipe has it.
            and (job.seed is None or found.get("seed") == job.seed)
            and found.get("file", {}).get("sha256", sha) == sha
        ):
            _restore_sidecar(candidate, found, sha, spec.sidecar)
            return [(candidate, sha)]
    return []


def _restore_sidecar(path: Path, found: dict[str, Any], sha: str, wanted: bool) -> None:
    """The kill may have come between the image and its sidecar: write the sidecar now."""
    from .images import verify_image_file

    sidecar = output.sidecar_path(path)
    if not wanted or sidecar.exists():
        return
    try:
        fmt, width, height = verify_image_file(path)
    except ValueError:
        return
    info = {
        "name": path.name,
        "sha256": sha,
        "width": width,
        "height": height,
        "format": fmt,
        "bytes": path.stat().st_size,
    }
    text = json.dumps({**found, "file": info}, ensure_ascii=False, indent=2) + "\n"
    output.write_text_atomic(sidecar, text)
