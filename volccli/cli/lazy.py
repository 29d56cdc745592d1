"""Commands that are built only when they run or show their own help.

The generation commands carry dozens of options each; building all of them for
`volccli --help` would double its start-up time. The group holds a light stand-in
(name, help, panel) for each, which is all the top-level help, suggestions and name
completion need, and swaps in the real command on first use. ``defer_registered`` does
the same for the commands and groups registered on the app the usual Typer way.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import (
    get_command_from_info,
    get_command_name,
    get_group_from_info,
    solve_typer_info_defaults,
    solve_typer_info_help,
)
from typer.models import CommandInfo, DefaultPlaceholder, TyperInfo

from . import fastparams


class LazyCommand(NamedTuple):
    name: str
    help: str
    panel: str
    epilog: str
    build: Callable[[], Callable[..., Any]] | None = None  # returns the command function
    # Builds the whole command or group instead (see defer_registered).
    make: Callable[["LazyGroup"], Any] | None = None


class LazyGroup(TyperGroup):
    lazy: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        self._built: set[str] = set()
        stand_ins = {
            spec.name: TyperCommand(
                spec.name,
                help=spec.help,
                rich_help_panel=spec.panel,
                rich_markup_mode=self.rich_markup_mode,
            )
            for spec in self.lazy.values()
        }
        self.commands = {**stand_ins, **self.commands}
        finish_tree(self)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]  # Click's Context
        spec = self.lazy.get(cmd_name)
        if spec is None or self._listing or cmd_name in self._built:
            return self.commands.get(cmd_name)
        if spec.make is not None:
            command = spec.make(self)
        else:
            command = get_command_from_info(
                CommandInfo(
                    name=spec.name,
                    callback=spec.build() if spec.build is not None else None,
                    help=spec.help,
                    epilog=spec.epilog,
                    rich_help_panel=spec.panel,
                ),
                pretty_exceptions_short=True,
                rich_markup_mode=self.rich_markup_mode,
            )
        finish_tree(command)
        self.commands[cmd_name] = command
        self._built.add(cmd_name)
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]  # Click's types
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def finish_tree(command: Any) -> None:
    """What every command gets once built: fast coercion, and flags shown as flags."""
    fastparams.install_tree(command)
    _flags_untyped(command)


def _flags_untyped(command: Any) -> None:
    """Show boolean flags in help without a type, as Typer did before 0.29.

    Typer 0.29 labels every option with its type, flags included (`--json <bool>`),
    which reads as if they took a value. An empty metavar leaves that column blank;
    options that take a value keep theirs. The help option is made on first use, so it
    is treated then (like the fast coercion in fastparams.install_tree).
    """
    for param in getattr(command, "params", ()):
        _untype(param)
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None and not getattr(make_help, "untyped", False):

        def get_help_option(ctx: Any) -> Any:
            option = make_help(ctx)
            if option is not None:
                _untype(option)
            return option

        get_help_option.untyped = True  # type: ignore[attr-defined]
        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _flags_untyped(sub)


def _untype(param: Any) -> None:
    if getattr(param, "is_flag", False) and not param.count and param.metavar is None:
        param.metavar = ""


def lazy_group(commands: list[LazyCommand]) -> type[LazyGroup]:
    """A group class that knows these lazy commands."""
    return type("VolccliGroup", (LazyGroup,), {"lazy": {spec.name: spec for spec in commands}})


def defer_registered(app: typer.Typer) -> None:
    """Build the commands and groups registered on ``app`` on first use as well.

    Typer builds every registered command and group, with all their options, before it
    parses a single argument; until one is chosen, only its name, help and panel are
    needed. Call once, after the last registration; the app's group class must be a
    ``lazy_group``. Hidden, deprecated and nameless entries stay as Typer builds them.
    """
    group_cls = app.info.cls
    assert isinstance(group_cls, type) and issubclass(group_cls, LazyGroup)
    lazy = dict(group_cls.lazy)
    short = app.pretty_exceptions_short
    kept_commands = []
    for info in app.registered_commands:
        if info.hidden or info.deprecated or info.short_help or info.callback is None:
            kept_commands.append(info)
            continue
        name = info.name or get_command_name(info.callback.__name__)
        text = (
            inspect.cleandoc(info.help) if info.help is not None else inspect.getdoc(info.callback)
        )
        lazy[name] = LazyCommand(
            name, text or "", _plain(info.rich_help_panel), "", make=_command_maker(info, short)
        )
    kept_groups = []
    for info in app.registered_groups:
        solved = solve_typer_info_defaults(info)
        if solved.hidden or solved.deprecated or solved.short_help or not solved.name:
            kept_groups.append(info)
            continue
        text = solve_typer_info_help(info)
        suggest = getattr(app, "suggest_commands", True)
        lazy[solved.name] = LazyCommand(
            solved.name,
            text,
            _plain(solved.rich_help_panel),
            "",
            make=_group_maker(info, short, suggest),
        )
    app.registered_commands = kept_commands
    app.registered_groups = kept_groups
    group_cls.lazy = lazy


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, DefaultPlaceholder) else value


def _command_maker(info: CommandInfo, short: bool) -> Callable[[LazyGroup], Any]:
    def make(group: LazyGroup) -> Any:
        return get_command_from_info(
            info, pretty_exceptions_short=short, rich_markup_mode=group.rich_markup_mode
        )

    return make


def _group_maker(info: TyperInfo, short: bool, suggest: bool) -> Callable[[LazyGroup], Any]:
    def make(group: LazyGroup) -> Any:
        return get_group_from_info(
            info,
            pretty_exceptions_short=short,
            suggest_commands=suggest,
            rich_markup_mode=group.rich_markup_mode,
        )

    return make
