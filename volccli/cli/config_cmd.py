"""`volccli config set|get|show|unset|path`: the config file and where each value comes from."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand  # already imported by the lazy command tree

from ..errors import ConfigError, InputError
from .common import global_options, interactive_stdin, make_ui, print_json, reported
from .lazy import LazyGroup, group_from

if TYPE_CHECKING:
    from ..config import Resolved, Setting

app = typer.Typer(help="Show and change settings and credentials.", no_args_is_help=True)

# `config get` of a setting that is not set: a miss, not a failure (git config exits 1 too).
NOT_SET = 1

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-P", help="Profile to use. \\[default: VOLCCLI_PROFILE or default]"),
]
KeyArg = Annotated[
    str,
    typer.Argument(
        help="Setting name, e.g. base_url or secret_key.",
        metavar="KEY",
        autocompletion=lambda: _setting_names(),
    ),
]


def _setting_names() -> list[str]:
    from ..config import SETTINGS

    return list(SETTINGS)


def _profile(ctx: typer.Context, local: str | None) -> str:
    from ..config import DEFAULT_PROFILE

    return (
        local
        or global_options(ctx).get("profile")
        or os.environ.get("VOLCCLI_PROFILE")
        or DEFAULT_PROFILE
    )


def _connection(ctx: typer.Context) -> dict[str, Any]:
    from .signatures import connection_flags

    return connection_flags(global_options(ctx))


def _setting(key: str) -> Setting:
    from ..config import SETTINGS

    setting = SETTINGS.get(key)
    if setting is None:
        raise InputError(f"unknown setting {key!r}", f"known settings: {', '.join(SETTINGS)}")
    return setting


class ValueCommand(TyperCommand):
    """`config set KEY VALUE` where VALUE may be a negative number: Click takes "-1" for
    an option ("No such option: -1"), so such a word goes after "--", where it is an
    argument, and the setting's checks say what is valid (`timeout must be above 0`)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]  # Click's Context
        return super().parse_args(ctx, negatives_last(args))


def negatives_last(args: list[str]) -> list[str]:
    """``args`` with the words that are negative numbers moved after a "--" (unless one is
    there already, or the word is the value of --profile)."""
    if "--" in args:
        return args
    kept: list[str] = []
    moved: list[str] = []
    for index, arg in enumerate(args):
        after_profile = index > 0 and args[index - 1] in ("-P", "--profile")
        (moved if _negative_number(arg) and not after_profile else kept).append(arg)
    return [*kept, "--", *moved] if moved else args


def _negative_number(word: str) -> bool:
    if not word.startswith("-") or word.startswith("--"):
        return False
    try:
        float(word)
    except ValueError:
        return False
    return True


def _check_value(setting: Setting, value: str, *, on_argv: bool) -> None:
    """Refuse now a value that every later command would refuse (a usage error here):
    its type, choices, bounds and format from config.SETTINGS, a URL's shape, and a key
    with characters a request's headers cannot carry. A line break or a control
    character is refused wherever the value came from; a non-ASCII one only when it was
    read from stdin or a prompt: on the command line it is in plain view (a placeholder
    such as AKLT…), and a command that uses the key refuses it, naming the profile."""
    from ..config import coerce
    from ..connection import check_base_url, unsendable_because
    from ..settings import unsendable

    checked = coerce(setting, value)
    problem = unsendable(checked) if setting.token else ""
    if problem and (not on_argv or problem in ("a line break", "a control character")):
        # Named, never shown: the value is usually a secret.
        raise InputError(
            f"the value for {setting.name} {unsendable_because(setting.name, checked)}",
            "give just the value (spaces and line breaks around it are dropped)",
        )
    if setting.name in ("base_url", "endpoint"):
        try:
            check_base_url(value, setting.name, "config set")
        except ConfigError as error:
            raise InputError(error.message, error.hint) from None


@app.command("path")
def path_command() -> None:
    """Print the config file's path."""
    from ..config import config_path

    typer.echo(str(config_path()))


@app.command("set", cls=ValueCommand)
def set_command(
    ctx: typer.Context,
    key: KeyArg,
    value: Annotated[
        str | None,
        typer.Argument(
            help="The value (never for secrets: they are prompted for or read with --stdin)."
        ),
    ] = None,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the value from stdin (first line).")
    ] = False,
    profile: ProfileOpt = None,
) -> None:
    """Store a setting in a profile. Secrets are prompted for, or read with --stdin."""
    from ..config import config_path, set_value

    ui = make_ui(global_options(ctx))
    with reported(ui):
        setting = _setting(key)
        on_argv = value is not None and not stdin
        if stdin:
            if value is not None:
                raise InputError("give the value or --stdin, not both", "drop one of them")
            value = sys.stdin.readline().strip()
        elif value is None:
            if not interactive_stdin():
                raise InputError(
                    f"no value for {key}", f"pipe it: echo VALUE | volccli config set {key} --stdin"
                )
            value = str(typer.prompt(key, hide_input=setting.secret))
        elif setting.secret:
            raise InputError(
                f"{key} is a secret and is not accepted on the command line (shell history, ps)",
                f"run `volccli config set {key}` to be prompted, or pipe it with --stdin",
            )
        if setting.token:
            value = value.strip()  # a pasted key's line break, a CRLF file's \r
        if not value:
            raise InputError(
                f"empty value for {key}", "give a value, or use `volccli config unset`"
            )
        _check_value(setting, value, on_argv=on_argv)
        name = _profile(ctx, profile)
        path = config_path()
        set_value(path, name, key, value)
        shown = "****" if setting.secret else value
        ui.note(f"set {key} = {shown} in profile {name!r} ({path})")


@app.command("unset")
def unset_command(ctx: typer.Context, key: KeyArg, profile: ProfileOpt = None) -> None:
    """Remove a setting from a profile."""
    from ..config import config_path, unset_value

    ui = make_ui(global_options(ctx))
    with reported(ui):
        _setting(key)
        name = _profile(ctx, profile)
        if unset_value(config_path(), name, key):
            ui.note(f"removed {key} from profile {name!r}")
        else:
            ui.note(f"{key} was not set in profile {name!r}")


@app.command("get")
def get_command(ctx: typer.Context, key: KeyArg, profile: ProfileOpt = None) -> None:
    """Print a setting's resolved value (secrets masked) and, on stderr, its source."""
    from ..config import resolve

    ui = make_ui(global_options(ctx))
    with reported(ui):
        _setting(key)
        flags = _connection(ctx)
        if profile:
            flags["profile"] = profile
        resolved = resolve(flags, strict=False)
        if resolved.get(key) is None:
            # One line, and not an error: a script tests the exit code (1, as git config).
            ui.note(
                f"volccli: {key} is not set (profile {resolved.profile!r}); "
                f"`volccli config set {key}` sets it"
            )
            raise typer.Exit(NOT_SET)
        typer.echo(resolved.shown(key))
        ui.note(f"from {resolved.source(key)}")
        problem = resolved.problems.get(key)
        if problem is not None:
            ui.warn(f"{problem.message}; {problem.hint}")


@app.command("show")
def show_command(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every setting with its value (secrets masked) and where it came from."""
    from ..config import SETTINGS, read_config, resolve

    ui = make_ui(global_options(ctx))
    with reported(ui):
        flags = _connection(ctx)
        if profile:
            flags["profile"] = profile
        resolved = resolve(flags, strict=False)
        profiles = sorted(read_config(resolved.path).get("profiles", {}))
        rows = [
            (key, resolved.shown(key), resolved.source(key))
            for key in SETTINGS
            if resolved.get(key) is not None
        ]
        if as_json:
            print_json(
                {
                    "config_file": str(resolved.path),
                    "profile": resolved.profile,
                    "profile_source": resolved.profile_source,
                    "profiles": profiles,
                    "settings": {
                        key: {"value": _json_value(resolved, key, shown), "source": source}
                        for key, shown, source in rows
                    },
                    # Set but not sent (a session token apart from its key pair).
                    "not_used": {
                        item.setting: {"value": "****", "source": item.source}
                        for item in resolved.unused
                    },
                    "notes": resolved.notes,
                }
            )
            return
        typer.echo(f"config file: {resolved.path}")
        typer.echo(
            f"profile: {resolved.profile} (from {resolved.profile_source}); "
            f"profiles: {', '.join(profiles) or 'none'}"
        )
        # A token that is set but not sent is listed too, so that the table shows it.
        rows += [(item.setting, "****", f"{item.source} (not used)") for item in resolved.unused]
        width = max(len(key) for key, _, _ in rows) if rows else 0
        for key, value, source in rows:
            typer.echo(f"  {key:<{width}}  {value:<24}  {source}")
        for note in resolved.notes:
            ui.warn(note)


def _json_value(resolved: Resolved, key: str, shown: str) -> Any:
    """The value with its type (a number stays a number), unless it is shown masked."""
    value = resolved.get(key)
    return value if shown == str(value) else shown


def make(group: LazyGroup) -> Any:
    return group_from(group, "config", app)
