"""Commands that are built only when they run or show their own help.

The generation commands carry dozens of options each; building all of them for
`volccli --help` would double its start-up time. The group holds a light stand-in
(name, help, panel) for each, which is all the top-level help, suggestions and name
completion need, and swaps in the real command on first use. ``deferred`` does the same
for the other commands and groups, and imports their modules only then too.
"""

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

from . import fastparams


class LazyCommand(NamedTuple):
    name: str
    help: str
    panel: str
    epilog: str
    build: Callable[[], Callable[..., Any]] | None = None  # returns the command function
    # Builds the whole command or group instead (see deferred).
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


def deferred(name: str, panel: str, summary: str, target: str) -> LazyCommand:
    """A top-level command whose module is imported only when the command is used.

    ``target`` is ``"module:function"`` under ``volccli.cli``; the function takes the group
    and returns the built command or group (see ``command_from`` and ``group_from``). The
    summary is what the top-level help lists: the first paragraph of the command's help.
    """
    module, function = target.split(":")

    def make(group: LazyGroup) -> Any:
        from importlib import import_module

        return getattr(import_module(f"volccli.cli.{module}"), function)(group)

    return LazyCommand(name, summary, panel, "", make=make)


def command_from(
    group: LazyGroup,
    name: str,
    function: Callable[..., Any],
    help: str | None = None,  # None: the function's docstring
    epilog: str = "",
) -> Any:
    """Build one command from its function, as ``app.command(name, help=…)`` would."""
    return get_command_from_info(
        CommandInfo(name=name, callback=function, help=help, epilog=epilog),
        pretty_exceptions_short=True,
        rich_markup_mode=group.rich_markup_mode,
    )


def group_from(group: LazyGroup, name: str, app: typer.Typer) -> Any:
    """Build a group from its Typer app, as ``add_typer(app, name=…)`` would."""
    return get_group_from_info(
        TyperInfo(app, name=name),
        pretty_exceptions_short=True,
        suggest_commands=True,
        rich_markup_mode=group.rich_markup_mode,
    )
