"""Options as data, and the one function that turns a description into a Typer parameter.

Commands generated from the request-kind table and the shared option groups both go
through ``parameter``, so every flag gets its help, panel and default text the same way.
"""

import inspect
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NamedTuple

import typer

from ..kinds import Field, ImageSlot

_PY_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


class Opt(NamedTuple):
    """A CLI option that is not a body field (output, request, connection, images)."""

    param: str
    decls: tuple[str, ...]
    type: Any
    help: str
    panel: str
    default: Any = None
    metavar: str = ""
    setting: str = ""  # the config setting it overrides, if any
    choices: tuple[str, ...] = ()  # values the shells offer, when neither of those says


def parameter(
    name: str,
    annotation: Any,
    *,
    decls: Sequence[str] = (),
    help: str,
    panel: str = "",
    default: Any = None,
    metavar: str = "",
    argument: bool = False,
    complete: Sequence[str] | Callable[[str], list[str]] = (),
    hidden: bool = False,
) -> inspect.Parameter:
    """A Typer parameter; ``complete`` is what the shells offer for its value: fixed
    choices, or a function of the word typed so far."""
    # Help is rendered as rich markup: escape brackets so "[default: 3]" stays visible.
    help = help.replace("[", "\\[")
    extra: dict[str, Any] = {}
    if metavar:
        extra["metavar"] = metavar
    if callable(complete):
        extra["autocompletion"] = complete
    elif complete:
        fixed = tuple(complete)
        extra["autocompletion"] = _completer(lambda: fixed)
    if panel:
        extra["rich_help_panel"] = panel
    if hidden:
        extra["hidden"] = True
    if argument:
        info = typer.Argument(help=help, show_default=False, **extra)
    else:
        info = typer.Option(*decls, help=help, show_default=False, **extra)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, info],
    )


def _completer(choices: Callable[[], Sequence[str]]) -> Callable[[str], list[str]]:
    def complete(incomplete: str) -> list[str]:
        return [choice for choice in choices() if choice.startswith(incomplete)]

    return complete


def field_help(f: Field) -> str:
    text = f.help
    if f.choices is not None:
        text += f" One of: {', '.join(map(str, f.choices))}."
    if f.range is not None:
        text += f" Range {f.range.describe()}."
    shown = f.shown_default
    if shown is not None and f.type != "bool":
        text += f" [default: {shown}]"
    elif f.type == "bool" and shown is not None:
        text += f" [default: {'on' if shown else 'off'}]"
    return text


def field_parameter(f: Field) -> inspect.Parameter:
    # Choices are typed by name on the command line whatever their wire type.
    py = str if f.choices is not None else _PY_TYPES[f.type]
    if f.positional:
        return parameter(
            f.param,
            py | None,
            help=field_help(f),
            argument=True,
            metavar=f.metavar or f.param.upper(),
        )
    decls = [f"--{f.option}/--no-{f.option}" if f.type == "bool" else f"--{f.option}"]
    if f.short:
        decls.append(f.short)
    return parameter(
        f.param,
        py | None,
        decls=decls,
        help=field_help(f),
        panel=f.panel,
        metavar=f.metavar or ("NAME" if f.choices else ""),
        complete=tuple(map(str, f.choices)) if f.choices else (),
    )


def slot_parameter(slot: ImageSlot) -> inspect.Parameter:
    if slot.positional:
        return parameter(
            slot.name, str | None, help=slot.help, argument=True, metavar=slot.name.upper()
        )
    annotation: Any = list[str] | None if slot.multiple else str | None
    metavar = "TYPE:IMAGE[:STRENGTH]" if slot.parse == "control" else "IMAGE"
    return parameter(
        slot.name,
        annotation,
        decls=[f"--{slot.option}"],
        help=slot.help,
        panel="Images",
        metavar=metavar,
    )


def opt_parameter(opt: Opt, *, hidden: bool = False, panel: str | None = None) -> inspect.Parameter:
    may_have_choices = bool(opt.choices or opt.setting or "|" in opt.metavar)
    return parameter(
        opt.param,
        opt.type,
        decls=opt.decls,
        help=opt.help,
        panel=opt.panel if panel is None else panel,
        default=opt.default,
        metavar=opt.metavar,
        # Looked up when a shell asks, not when the command is built (settings import
        # the config module, which --help does without).
        complete=_completer(lambda: opt_choices(opt)) if may_have_choices else (),
        hidden=hidden,
    )


def opt_choices(opt: Opt) -> tuple[str, ...]:
    """The values an option takes when they are a fixed set, else ().

    Its own list, else those of the setting it overrides (one list for the flag and the
    config file), else those its metavar spells out (``jsonl|csv``), so that what the
    help shows completes.
    """
    if opt.choices:
        return opt.choices
    if opt.setting:
        from ..config import SETTINGS  # not at the top: only completion needs it

        setting = SETTINGS.get(opt.setting)
        if setting is not None and setting.choices:
            return tuple(setting.choices)
    if "|" in opt.metavar:
        return tuple(opt.metavar.split("|"))
    return ()


OUTPUT = "Output"
REQUEST = "Request"
CONNECTION = "Connection"
IMAGES = "Images"

DISPLAY = "Display"

DISPLAY_OPTS: tuple[Opt, ...] = (
    Opt("verbose", ("--verbose", "-v"), bool | None, "Say more on stderr.", DISPLAY),
    Opt(
        "quiet",
        ("--quiet", "-q"),
        bool | None,
        "Only errors on stderr; no status display.",
        DISPLAY,
    ),
    Opt(
        "no_color",
        ("--no-color",),
        bool | None,
        "No colour on stderr (NO_COLOR works too).",
        DISPLAY,
    ),
)

# Display and connection options are accepted before the command (volccli --sandbox txt2img …) and
# after it (volccli txt2img … --sandbox); the one after the command wins.
CONNECTION_OPTS: tuple[Opt, ...] = (
    Opt(
        "sandbox",
        ("--sandbox",),
        bool | None,
        "Run against a built-in sandbox on loopback: no credentials, no cost.",
        CONNECTION,
    ),
    Opt(
        "profile",
        ("--profile", "-P"),
        str | None,
        "Config profile to use. [env: VOLCCLI_PROFILE]",
        CONNECTION,
        setting="profile",
    ),
    Opt(
        "auth",
        ("--auth",),
        str | None,
        "gateway (Bearer key) or official (AK/SK signing); default: by the credentials found.",
        CONNECTION,
        metavar="gateway|official",
        setting="auth",
    ),
    Opt(
        "base_url",
        ("--base-url",),
        str | None,
        "Gateway base URL. [env: VOLCCLI_BASE_URL]",
        CONNECTION,
        metavar="URL",
        setting="base_url",
    ),
    Opt(
        "endpoint",
        ("--endpoint",),
        str | None,
        "Official endpoint (sandbox, proxy, other region). [env: VOLCCLI_ENDPOINT]",
        CONNECTION,
        metavar="URL",
        setting="endpoint",
    ),
    Opt(
        "region",
        ("--region",),
        str | None,
        "Signing region. [default: cn-north-1]",
        CONNECTION,
        setting="region",
    ),
    Opt(
        "timeout",
        ("--timeout",),
        float | None,
        "Seconds to wait for an answer. [default: 120]",
        CONNECTION,
        metavar="SECONDS",
        setting="timeout",
    ),
    Opt(
        "retries",
        ("--retries",),
        int | None,
        "Retries for rate limits and requests that were never sent. [default: 3]",
        CONNECTION,
        setting="retries",
    ),
    Opt(
        "retry_server_errors",
        ("--retry-server-errors",),
        bool | None,
        "Also resend after 5xx or timeouts (such requests may be billed twice).",
        CONNECTION,
    ),
)

OUTPUT_OPTS: tuple[Opt, ...] = (
    Opt(
        "output_dir",
        ("--output-dir", "-o"),
        str | None,
        "Folder for the images; '-' writes one image's bytes to stdout. "
        "[default: ., setting output_dir]",
        OUTPUT,
        metavar="DIR",
        setting="output_dir",
    ),
    Opt(
        "name",
        ("--name",),
        str | None,
        "File name template; tokens {command} {prompt} {seed} {index} {n} {date} {time} "
        "{request_id} {req_key} {hash} {input} {row} {name}, and {prompt:20} caps a length. "
        "[default: {command}_{prompt}_{seed}]",
        OUTPUT,
        metavar="TEMPLATE",
        setting="name",
    ),
    Opt(
        "on_exists",
        ("--on-exists",),
        str | None,
        "When a file exists: suffix, skip, overwrite or fail. [default: suffix]",
        OUTPUT,
        metavar="POLICY",
        setting="on_exists",
    ),
    Opt("count", ("--count", "-n"), int, "Number of images (one request each).", OUTPUT, default=1),
    Opt(
        "json",
        ("--json",),
        bool,
        "Print JSON Lines on stdout instead of paths.",
        OUTPUT,
        default=False,
    ),
    Opt(
        "null",
        ("--null", "-0"),
        bool,
        "Separate printed paths with NUL (for xargs -0).",
        OUTPUT,
        default=False,
    ),
    Opt(
        "no_sidecar",
        ("--no-sidecar",),
        bool,
        "Do not write the .json recipe beside each image.",
        OUTPUT,
        default=False,
    ),
    Opt(
        "no_embed",
        ("--no-embed",),
        bool,
        "Do not store the recipe inside the image file.",
        OUTPUT,
        default=False,
    ),
    Opt(
        "open",
        ("--open",),
        bool,
        "Open the written images in the system viewer (xdg-open or open), without waiting "
        "for it; ignored when CI is set.",
        OUTPUT,
        default=False,
    ),
)

REQUEST_OPTS: tuple[Opt, ...] = (
    Opt(
        "sets",
        ("--set",),
        list[str] | None,
        "Add or override a body field; VALUE is JSON if it parses, else a string. Repeatable.",
        REQUEST,
        metavar="KEY=VALUE",
    ),
    Opt(
        "dry_run",
        ("--dry-run",),
        bool,
        "Print the exact request (secrets masked, base64 shortened) and send nothing.",
        REQUEST,
        default=False,
    ),
    Opt(
        "print_curl",
        ("--print-curl",),
        bool,
        "Print a ready-to-run curl command for the request and send nothing.",
        REQUEST,
        default=False,
    ),
    Opt(
        "use_async",
        ("--async",),
        bool,
        "Submit as an async task and poll for the result.",
        REQUEST,
        default=False,
    ),
    Opt(
        "poll_interval",
        ("--poll-interval",),
        float,
        "First wait between async polls.",
        REQUEST,
        default=3.0,
        metavar="SECONDS",
    ),
    Opt(
        "wait_timeout",
        ("--wait-timeout",),
        float,
        "Give up waiting for an async task after this.",
        REQUEST,
        default=900.0,
        metavar="SECONDS",
    ),
    Opt(
        "no_validate",
        ("--no-validate",),
        bool,
        "Skip local range and choice checks; the server still checks.",
        REQUEST,
        default=False,
    ),
    Opt(
        "on_filtered",
        ("--on-filtered",),
        str,
        "After a post-generation audit rejection (50511, 50519): fail, skip or reseed:N.",
        REQUEST,
        default="fail",
        metavar="POLICY",
        choices=("fail", "skip", "reseed:3"),  # reseed:N with any N; 3 is the example
    ),
    Opt(
        "no_log",
        ("--no-log",),
        bool,
        "Do not record this call in the history.",
        REQUEST,
        default=False,
    ),
)

IMAGE_OPTS: tuple[Opt, ...] = (
    Opt(
        "fit",
        ("--fit",),
        bool,
        "Downsize and re-encode inputs to meet the limits.",
        IMAGES,
        default=False,
    ),
    Opt(
        "no_convert",
        ("--no-convert",),
        bool,
        "Refuse inputs that are not JPEG or PNG instead of converting them.",
        IMAGES,
        default=False,
    ),
    Opt(
        "max_image_bytes",
        ("--max-image-bytes",),
        int | None,
        "Input file size limit. [default: 4928307 (4.7 MB)]",
        IMAGES,
        metavar="BYTES",
        setting="max_image_bytes",
    ),
    Opt(
        "max_image_side",
        ("--max-image-side",),
        int | None,
        "Input width/height limit. [default: 4096]",
        IMAGES,
        metavar="PIXELS",
        setting="max_image_side",
    ),
    Opt(
        "max_aspect",
        ("--max-aspect",),
        float | None,
        "Input long/short side limit. [default: 3]",
        IMAGES,
        metavar="RATIO",
        setting="max_aspect",
    ),
)

GLOBAL_OPTS: tuple[Opt, ...] = DISPLAY_OPTS + CONNECTION_OPTS
