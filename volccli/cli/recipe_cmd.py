"""`volccli inspect IMAGE` and `volccli rerun IMAGE`: the recipe that travels with an image.

The recipe is read from the sidecar (IMAGE.json) when it is sound and records the image's
own SHA-256, else from the copy inside the image; IMAGE may also be a sidecar itself, whose
recipe is then used as it is. `rerun` sends the recorded request again: same req_key,
action, version and body, its input images re-read from their recorded paths and checked
against their recorded SHA-256, optionally varied with --seed and --set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import Session, global_options, make_ui, print_json, reported
from .lazy import LazyGroup, command_from
from .options import (
    GLOBAL_OPTS,
    OUTPUT_OPTS,
    REQUEST_OPTS,
    opt_parameter,
    parameter,
)
from .signatures import CONTEXT, begin, connection_flags, signature_command, with_global_options

if TYPE_CHECKING:
    from ..images import ImageInput

RERUN_HELP = (
    "Make an image again from its recipe: the same request (inputs re-read and checked "
    "against their recorded SHA-256), or a variation with --seed and --set."
)
# Options of a generation command that do not apply to a recorded request.
_RERUN_LEFT_OUT = ("count", "no_validate")


# --- reading a recipe -----------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """The recipe to use for an image, where it came from, and what to tell about it."""

    recipe: dict[str, Any]
    where: str
    notes: tuple[str, ...] = ()
    # The recipe is a sidecar that records another SHA-256 than the image's, and the
    # image holds no recipe of its own: it may describe an earlier image of that name.
    mismatch: bool = False


def load_recipe(image: str) -> Loaded:
    """The recipe of an image (or of a sidecar given itself); InputError when none is usable.

    The sidecar wins when it is sound and records this file's SHA-256; otherwise the
    copy inside the image, with a note saying why the sidecar was passed over.
    """
    from ..errors import InputError
    from ..output import SIDECAR_SUFFIX
    from ..recipe import lookup

    path = Path(image).expanduser()
    if not path.is_file():
        what = (
            "a folder"
            if path.is_dir()
            else "not a regular file"
            if path.exists()
            else "no such file"
        )
        raise InputError(f"{image}: {what}", "give an image that volccli wrote")
    if path.name.endswith(SIDECAR_SUFFIX):
        return _given_sidecar(image, path)
    try:
        found = lookup(path)
    except OSError as exc:
        raise InputError(
            f"{image}: cannot be read ({exc.strerror or exc})", "check the file's permissions"
        ) from None
    side = found.sidecar.name
    if found.from_sidecar is not None and not found.stale:
        return Loaded(found.from_sidecar, str(found.sidecar))
    if found.embedded is not None:
        why = (
            "describes another image (the SHA-256 it records is not this file's)"
            if found.stale
            else found.sidecar_problem
        )
        notes = (f"note: {side} {why}; using the recipe inside {path.name}",) if why else ()
        return Loaded(found.embedded, f"{image} (embedded)", notes)
    inside = (
        f"the recipe inside the file is damaged ({found.embedded_problem})"
        if found.embedded_problem
        else "the file holds none"
    )
    if found.from_sidecar is not None:  # stale, and nothing better inside the image
        damaged = (f"note: {inside}",) if found.embedded_problem else ()
        return Loaded(found.from_sidecar, str(found.sidecar), damaged, mismatch=True)
    if found.sidecar_problem:
        raise InputError(
            f"{image} has no volccli recipe that can be read: {side} {found.sidecar_problem}, "
            f"and {inside}",
            _sidecar_fix(side, found.sidecar_problem),
        )
    if found.embedded_problem:
        raise InputError(
            f"{image}: the recipe is damaged ({found.embedded_problem})",
            "make the image again, or restore the file from a copy",
        )
    raise InputError(
        f"{image} has no volccli recipe: neither {side} nor the file holds one",
        "only images written by volccli carry one (unless --no-sidecar and --no-embed)",
    )


def _sidecar_fix(side: str, problem: str) -> str:
    if problem.startswith("is not a volccli"):
        return "only images written by volccli carry one"
    if problem.startswith("cannot be read"):
        return f"check the permissions of {side}"
    if problem.startswith("is not a regular file"):
        return f"move {side} out of the way; it should be the image's recipe file"
    return f"repair {side}, or make the image again"


def _given_sidecar(image: str, path: Path) -> Loaded:
    """A sidecar named itself: its recipe is used as it is, whatever the image is now."""
    from ..errors import InputError
    from ..recipe import RecipeDamaged, read_sidecar, shape_problem

    try:
        found = read_sidecar(path)
        problem = "" if found is None else shape_problem(found)
    except RecipeDamaged as exc:
        found, problem = None, str(exc)
    except OSError as exc:
        raise InputError(
            f"{image}: cannot be read ({exc.strerror or exc})", "check the file's permissions"
        ) from None
    if problem:
        raise InputError(
            f"{image}: the recipe is damaged ({problem})",
            "repair it, or give the image instead (the recipe inside it is used)",
        )
    if found is None:
        raise InputError(
            f"{image} is not a volccli recipe", "give an image that volccli wrote, or its sidecar"
        )
    return Loaded(found, image)


def refuse_mismatch(image: str, loaded: Loaded) -> None:
    """rerun must not silently make another image than the one it was given."""
    from ..errors import InputError

    if loaded.mismatch:
        raise InputError(
            f"{image}: its sidecar {Path(loaded.where).name} describes another image (the "
            "SHA-256 it records is not this file's), and the file holds no usable recipe of "
            "its own",
            f"if {Path(image).name} was only edited since, `volccli rerun {loaded.where}` "
            "uses the sidecar as it is",
        )


# --- inspect ----------------------------------------------------------------------------


@with_global_options
def inspect_command(
    ctx: typer.Context,
    image: Annotated[
        str,
        typer.Argument(
            help="An image written by volccli, or its sidecar (IMAGE.json) as it is.",
            show_default=False,
        ),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the recipe as one JSON object.")
    ] = False,
) -> None:
    """Show how an image was made: its recipe from the sidecar or from inside the file."""
    ui = make_ui(global_options(ctx))
    with reported(ui, json_errors=json_out):
        loaded = load_recipe(image)
        for note in loaded.notes:
            ui.note(note)
        if json_out:
            print_json({**loaded.recipe, "found_in": loaded.where, "file_changed": loaded.mismatch})
        else:
            sys.stdout.write(render(loaded.recipe, loaded.where) + "\n")
        if loaded.mismatch:
            ui.warn(
                f"{image} is not the file its sidecar describes (its SHA-256 differs): the "
                "image changed since volccli wrote it, or the sidecar belongs to an earlier "
                "image of that name"
            )


def render(found: Mapping[str, Any], where: str) -> str:
    """The recipe for a person: the main facts, then the body as sent."""
    from ..runner import prompt_of

    body = found.get("body") or {}
    lines = [f"recipe from {where}"]

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"  {label:<10} {value}")

    add("command", found.get("command"))
    add("req_key", found.get("req_key"))
    add("action", f"{found.get('action', '')} {found.get('version', '')}".strip())
    add("prompt", prompt_of(body))
    add("seed", found.get("seed"))
    info = found.get("file") or {}
    if info:
        add(
            "image",
            f"{info.get('width')}x{info.get('height')} {info.get('format', '')}, "
            f"{info.get('bytes')} bytes, sha256 {info.get('sha256', '')}",
        )
    add("request", found.get("request_id"))
    add("task", found.get("task_id"))
    add("hash", found.get("request_hash"))
    add("made", f"{found.get('finished', '')} by volccli {found.get('volccli', '?')}")
    for item in found.get("inputs") or []:
        detail = (
            f" (sha256 {str(item.get('sha256'))[:16]}…, {item.get('bytes')} bytes)"
            if (item.get("sha256"))
            else ""
        )
        add("input", f"{item.get('source')}{detail}")
    for key in ("rephraser_result", "predict_tags_result", "vlm_result"):
        add(key.replace("_result", ""), found.get(key))
    lines.append("  body:")
    import json  # here, not at the top: every start imports this module

    text = json.dumps(body, ensure_ascii=False, indent=2)
    lines += [f"    {line}" for line in text.splitlines()]
    return "\n".join(lines)


# --- rerun ------------------------------------------------------------------------------


def make_rerun_command(group: LazyGroup) -> Any:
    return command_from(
        group,
        "rerun",
        make_rerun(),
        RERUN_HELP,
        "Example: volccli rerun out/txt2img_a-fox_42.png --seed 7 --set scale=5",
    )


def make_inspect_command(group: LazyGroup) -> Any:
    return command_from(group, "inspect", inspect_command)


def make_rerun() -> Callable[..., None]:
    params = [
        CONTEXT,
        parameter(
            "image",
            str,
            help="An image written by volccli, or its sidecar (IMAGE.json) as it is.",
            argument=True,
            metavar="IMAGE",
            default=...,
        ),
        parameter(
            "seed",
            int | None,
            decls=["--seed", "-s"],
            panel="Request",
            help="Use this seed instead of the recorded one (-1 draws a new one).",
        ),
    ]
    groups = REQUEST_OPTS + OUTPUT_OPTS + GLOBAL_OPTS
    params += [opt_parameter(opt) for opt in groups if opt.param not in _RERUN_LEFT_OUT]
    return signature_command("rerun", RERUN_HELP, params, run_rerun)


def run_rerun(options: dict[str, Any]) -> None:
    merged, ui = begin(options)
    options["count"] = 1
    with reported(ui, json_errors=options["json"]):
        loaded = load_recipe(options["image"])
        refuse_mismatch(options["image"], loaded)
        for note in loaded.notes:
            ui.note(note)
        ui.detail(f"recipe from {loaded.where}")
        with Session(ui, connection_flags(merged)) as session:
            from .generate import execute

            request = recipe_request(loaded.recipe, options, session, Path(options["image"]))
            execute(request, options, session, ui)


# Body fields that alone are no request: what a fetched task's recipe can know.
_NOT_A_REQUEST = frozenset({"req_key", "seed", "return_url"})


def recipe_request(
    found: Mapping[str, Any], options: Mapping[str, Any], session: Session, image: Path
) -> Any:
    """The recorded request as a runner.Request, varied by --seed and --set."""
    from ..build import output_spec
    from ..errors import InputError
    from ..kinds import CALL
    from ..payload import parse_set, rehydrate

    req_key = str(found.get("req_key") or found["body"].get("req_key") or "")
    command = str(found.get("command") or req_key)
    if not set(found["body"]) - _NOT_A_REQUEST:
        # `task wait` of a task submitted elsewhere knows only what the result carried.
        raise InputError(
            f"the recipe of {image} holds no request to send again (only "
            f"{', '.join(sorted(found['body']))})",
            "it was fetched with `task wait` from a task volccli did not submit here; run "
            "the command that made it instead",
        )
    base = rehydrate(found["body"], lambda desc: reload_input(desc, image.parent))
    overrides = parse_set(options.get("sets") or [])
    if options.get("seed") is not None:
        overrides["seed"] = options["seed"]
    from ..runner import Request

    # A kind without fields or slots: the body is taken as recorded, not rebuilt.
    kind = CALL._replace(command=command, req_key=req_key, slots=())
    return Request(
        kind=kind,
        req_key=req_key,
        values={},
        base=base,
        overrides=overrides,
        action=str(found.get("action") or ""),
        version=str(found.get("version") or ""),
        output=output_spec(options, session.resolved, 1),
    )


def reload_input(desc: Mapping[str, Any], image_dir: Path) -> ImageInput:
    """A recorded input, read again and proven unchanged by its SHA-256."""
    from ..errors import InputError
    from ..images import ImageLimits, in_memory_source, load_image

    source = str(desc.get("source") or "")
    if in_memory_source(source) or not source:
        raise InputError(
            f"the recipe's input came from {source or 'an unknown source'}, which cannot be "
            "read again",
            "make the image again with the command and a file path instead",
        )
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists() and (image_dir / path).exists():
        path = image_dir / path  # recorded relative to where the command ran
    if not path.exists():
        raise InputError(
            f"the recipe's input {source} is missing",
            "put the original file back at that path to rerun",
        )

    def no_stdin() -> bytes:
        raise InputError("stdin is not an input of a recipe")

    try:
        # Inputs that were fitted to the limits are fitted again the same way.
        loaded = load_image(str(path), "input", ImageLimits(fit=True), read_stdin=no_stdin)
    except InputError as error:
        raise InputError(f"the recipe's input {source}: {error.message}", error.hint) from None
    recorded = str(desc.get("sha256") or "")
    if loaded.sha256 != recorded:
        raise InputError(
            f"the recipe's input {source} has changed since the image was made "
            f"(SHA-256 {loaded.sha256[:12]}… instead of {recorded[:12]}…)",
            "restore the original file, or make a new image from the changed one",
        )
    return loaded
