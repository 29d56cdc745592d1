"""Option values (from flags or a batch row) → a runner.Request, with every input checked.

Keys are the generated command's parameter names (``steps``, ``watermark_position``,
``image``, ``control``, ``output_dir``, ``sets`` …). Nothing here prints or touches the
network; images are read and checked, so bad input fails before anything is sent.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SETTINGS, Resolved
from .errors import InputError
from .images import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    ImageInput,
    ImageLimits,
    load_base64,
    load_image,
    resized_like,
    stream_cap,
)
from .jsonkind import json_kind
from .kinds import Kind
from .output import DEFAULT_TEMPLATE, OutputSpec, check_template, per_image_tokens
from .payload import ImageRef, Inputs, parse_control, parse_set
from .runner import Request

ON_EXISTS = SETTINGS["on_exists"].choices
TEXT_FIELDS = ("prompt", "positive_prompt", "negative_prompt")


@dataclass
class Stdin:
    """stdin can feed one argument per run; it is read only when '-' is given."""

    used_by: list[str] = field(default_factory=list)
    reader: Callable[[int], bytes] = lambda limit: sys.stdin.buffer.read(limit)

    def read(self, what: str, limit: int = -1) -> bytes:
        """All of stdin, or its first ``limit`` bytes (so that an endless stream cannot
        fill the memory)."""
        if self.used_by:
            raise InputError(
                f"{what} -: stdin is already used by {self.used_by[0]}",
                "only one argument can read stdin",
            )
        self.used_by.append(what)
        return self.reader(limit)


def read_text(value: str, what: str, stdin: Stdin, base_dir: Path | None = None) -> str:
    """A text argument: '-' reads stdin, @FILE reads a file, @@… is a literal '@…';
    invalid UTF-8 is refused."""
    if value == "-":
        return _decode(stdin.read(what), what, "stdin")
    if value.startswith("@") and not value.startswith("@@") and len(value) > 1:
        return read_file_text(value[1:], what, base_dir, given=value)
    if value.startswith("@@"):
        value = value[1:]
    return _valid_text(value, what)


def _valid_text(value: str, what: str) -> str:
    # Bytes that were not UTF-8 on the command line arrive as lone surrogates.
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        raise InputError(f"{what} is not valid UTF-8", "re-type it or pass it with @FILE")
    return value


def read_file_text(name: str, what: str, base_dir: Path | None = None, *, given: str = "") -> str:
    """A text file's content; ``given`` is the argument as typed, for messages."""
    path = Path(name).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"{what} {given or name}: cannot read {path} ({exc.strerror})", "check the file's path"
        ) from None
    return _decode(raw, what, str(path))


def _decode(raw: bytes, what: str, source: str) -> str:
    try:
        # utf-8-sig: editors on Windows start UTF-8 files with a byte-order mark.
        return raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise InputError(
            f"{what} from {source} is not valid UTF-8", "convert the text to UTF-8 (iconv -t UTF-8)"
        ) from None


def read_json_object(
    value: str, what: str, stdin: Stdin, base_dir: Path | None = None
) -> dict[str, Any]:
    if value == "-":
        text = _decode(stdin.read(what), what, "stdin")
    else:
        text = read_file_text(value, what, base_dir)
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise InputError(
            f"{what} {value}: not JSON ({exc})", "give a file holding one JSON object"
        ) from None
    if not isinstance(body, dict):
        raise InputError(
            f"{what} {value}: {json_kind(body)}, not a JSON object",
            'give a file holding one JSON object, e.g. {"prompt": "a fox"}',
        )
    return body


def image_limits(options: Mapping[str, Any], resolved: Resolved) -> ImageLimits:
    def pick(name: str, default: Any) -> Any:
        value = resolved.pick(name, options.get(name))  # a flag checked as the setting is
        return default if value is None else value

    limits = ImageLimits(
        max_bytes=int(pick("max_image_bytes", DEFAULT_MAX_BYTES)),
        max_side=int(pick("max_image_side", DEFAULT_MAX_SIDE)),
        max_aspect=float(pick("max_aspect", DEFAULT_MAX_ASPECT)),
        convert=not options.get("no_convert", False),
        fit=bool(options.get("fit", False)),
    )
    return limits


def check_listing(options: Mapping[str, Any]) -> None:
    """--json prints records, one per line; -0 separates paths: one or the other."""
    if options.get("json") and options.get("null"):
        raise InputError(
            "--json and -0/--null cannot be combined",
            "--json prints one JSON record per line; drop one of them",
        )


def output_spec(options: Mapping[str, Any], resolved: Resolved, count: int) -> OutputSpec:
    check_listing(options)
    folder = options.get("output_dir") or resolved.get("output_dir") or "."
    template = options.get("name") or resolved.get("name") or DEFAULT_TEMPLATE
    on_exists = options.get("on_exists") or resolved.get("on_exists") or "suffix"
    if on_exists not in ON_EXISTS:
        raise InputError(
            f"--on-exists {on_exists!r} is not one of {', '.join(ON_EXISTS)}",
            "use --on-exists suffix, skip, overwrite or fail",
        )
    check_template(template)
    sidecar = not options.get("no_sidecar", False)
    embed = not options.get("no_embed", False)
    if folder == "-":
        if count != 1:
            raise InputError(
                "-o - writes one image to stdout, but -n asks for more",
                "use -n 1 with -o -, or write to a folder",
            )
        if options.get("json"):
            raise InputError("-o - and --json both want stdout", "drop one of them")
        if sys.stdout.isatty() and not (options.get("dry_run") or options.get("print_curl")):
            raise InputError(
                "-o - would write the image's bytes to the terminal",
                "redirect them (-o - > image.png) or give a folder with -o",
            )
        return OutputSpec(None, template, on_exists, sidecar=False, embed=embed)
    if count > 1 and on_exists != "suffix" and not per_image_tokens(template):
        # Every image would get the same name: all but one would be paid for and lost.
        raise InputError(
            f"--name {template!r} gives all {count} images the same name, which "
            f"--on-exists {on_exists} cannot keep apart",
            "add {index} or {seed} to --name, or use --on-exists suffix",
        )
    return OutputSpec(Path(os.path.expanduser(folder)), template, on_exists, sidecar, embed)  # type: ignore[arg-type]  # checked above


def _mask_follows_canvas(kind: Kind, inputs: Inputs, notes: list[str]) -> None:
    """A mask given at its canvas's size stays at it when --fit shrinks the canvas."""
    masks = inputs.images.get("mask")
    canvas_slot = next((slot.name for slot in kind.slots if slot.positional), "")
    canvases = inputs.images.get(canvas_slot)
    if not masks or not canvases:
        return
    mask, canvas = masks[0], canvases[0]
    given_mask = mask.resized_from or (mask.width, mask.height)
    if canvas.resized_from == given_mask and (mask.width, mask.height) != (
        canvas.width,
        canvas.height,
    ):
        inputs.images["mask"] = [resized_like(mask, canvas)]
        notes.append(inputs.images["mask"][0].notes[-1])


def _one_stdin_reader(kind: Kind, options: Mapping[str, Any], literal_text: bool) -> None:
    """Refuse two '-' arguments before either is read: the first would take the bytes
    meant for the other (an image read as the prompt's text)."""
    wanting = [
        f.metavar or f"--{f.option}"
        for f in kind.fields
        if f.name in TEXT_FIELDS and options.get(f.param) == "-" and not literal_text
    ]
    for slot in kind.slots:
        raw = options.get(slot.name)
        given = [raw] if isinstance(raw, str) else list(raw or [])
        flag = slot.name.upper() if slot.positional else f"--{slot.option}"
        if slot.parse == "control":  # TYPE:-[:STRENGTH]
            given = [spec.split(":")[1] if spec.count(":") else spec for spec in given]
        wanting += [flag for source in given if source == "-"]
    if options.get("body") == "-":
        wanting.append("--body")
    if len(wanting) > 1:
        raise InputError(
            f"{wanting[0]} and {wanting[1]} both ask to read stdin",
            "only one argument can read stdin; give the others as files",
        )


def _check_carried_images(
    body: dict[str, Any], where: str, limits: ImageLimits, notes: list[str]
) -> None:
    """Images a body already carries as base64 are checked like any input and sent as
    such; then a sidecar, the history and --dry-run record their hash, not their data."""
    items = body.get("binary_data_base64")
    if not isinstance(items, list):
        return
    checked: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            image = load_base64(item, where, index, limits)
            notes.extend(image.notes)
            item = ImageRef(image)
        checked.append(item)
    body["binary_data_base64"] = checked


def build_request(
    kind: Kind,
    options: Mapping[str, Any],
    resolved: Resolved,
    *,
    stdin: Stdin | None = None,
    base_dir: Path | None = None,
    notes: list[str] | None = None,
    literal_text: bool = False,
) -> Request:
    """Check every value and input of one command (or batch row) and make its Request.

    ``literal_text`` (batch rows) takes prompts as written: '-' and '@FILE' read stdin
    and files only on the command line; an image '-' is refused.
    """
    stdin = stdin or Stdin()
    notes = notes if notes is not None else []
    req_key = kind.req_key or str(options.get("req_key") or "").strip()
    if not req_key:
        raise InputError("call needs a REQ_KEY", "e.g. volccli call jimeng_i2i_v30 --image in.png")
    # `or 1` would turn -n 0 into one (billed) image; plan() refuses counts below 1.
    raw_count = options.get("count")
    count = 1 if raw_count is None or raw_count == "" else int(raw_count)
    _one_stdin_reader(kind, options, literal_text)
    for slot in kind.slots:  # IMAGE comes before PROMPT on the command line: ask for it first
        if slot.positional and slot.required and not options.get(slot.name):
            raise InputError(f"{kind.command} needs {slot.name.upper()}", f"e.g. {kind.example}")
    values: dict[str, Any] = {}
    for f in kind.fields:
        value = options.get(f.param)
        if isinstance(value, str) and f.name in TEXT_FIELDS:
            what = f.metavar or f"--{f.option}"
            if literal_text:
                value = _valid_text(value, what)
            else:
                value = read_text(value, what, stdin, base_dir)
            if not value.strip():
                raise InputError(
                    f"{f.metavar or '--' + f.option} is empty",
                    'give some text, e.g. "a red bicycle"',
                )
        if value is None and f.required:
            raise InputError(
                f"{kind.command} needs {f.metavar or '--' + f.option}", f"e.g. {kind.example}"
            )
        values[f.name] = value
    if "prompt_field" in values and values["prompt_field"] is None:
        values["prompt_field"] = resolved.get("outpaint_prompt_field")
    limits = image_limits(options, resolved)

    def load(source: str, flag: str) -> ImageInput:
        if literal_text and source == "-":
            # Rows share one stdin (which may hold the batch itself): no row may take it.
            raise InputError(
                f"{flag} '-' cannot read stdin in a batch row",
                "give the image's path (relative to the batch file), URL or data: URI",
            )
        image = load_image(
            source,
            flag,
            limits,
            read_stdin=lambda: stdin.read(flag, stream_cap(limits) + 1),
            base_dir=base_dir,
        )
        notes.extend(image.notes)
        return image

    inputs = Inputs()
    for slot in kind.slots:
        raw = options.get(slot.name)
        given = [raw] if isinstance(raw, str) else list(raw or [])
        flag = slot.name.upper() if slot.positional else f"--{slot.option}"
        if not given and slot.required:
            raise InputError(f"{kind.command} needs {flag}", f"e.g. {kind.example}")
        if slot.parse == "control":
            validate = not options.get("no_validate", False)
            inputs.controls = [parse_control(spec, load, validate=validate) for spec in given]
        elif given:
            inputs.images[slot.name] = [load(source, flag) for source in given]
    _mask_follows_canvas(kind, inputs, notes)
    overrides = parse_set(options.get("sets") or [])
    base = {}
    if options.get("body") is not None:
        base = read_json_object(str(options["body"]), "--body", stdin, base_dir)
    # A batch row's body fields come as --set items; its errors are said as the row's.
    for given, where in ((base, "--body"), (overrides, "field" if literal_text else "--set")):
        _check_carried_images(given, where, limits, notes)
    return Request(
        kind=kind,
        req_key=req_key,
        values=values,
        inputs=inputs,
        overrides=overrides,
        base=base,
        action=str(options.get("action") or ""),
        version=str(options.get("version") or ""),
        count=count,
        output=output_spec(options, resolved, count),
        validate=not options.get("no_validate", False),
    )
