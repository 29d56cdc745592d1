"""Commands that are built only when they run or show their own help.

The generation commands carry dozens of options each; building all of them for
`volccli --help` would double its start-up time. The group holds a light stand-in
(name, help, panel) for each, which is all the top-level help, suggestions and name
completion need, and swaps in the real command on first use.
"""

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info
from typer.models import CommandInfo


class LazyCommand(NamedTuple):
    name: str
    help: str
    panel: str
    epilog: str
    build: Callable[[], Callable[..., Any]]  # returns the command function


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

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]  # Click's Context
        spec = self.lazy.get(cmd_name)
        if spec is None or self._listing or cmd_name in self._built:
            return self.commands.get(cmd_name)
        command = get_command_from_info(
            CommandInfo(
                name=spec.name,
                callback=spec.build(),
                help=spec.help,
                epilog=spec.epilog,
                rich_help_panel=spec.panel,
            ),
            pretty_exceptions_short=True,
            rich_markup_mode=self.rich_markup_mode,
        )
        self.commands[cmd_name] = command
        self._built.add(cmd_name)
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]  # Click's types
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def lazy_group(commands: list[LazyCommand]) -> type[LazyGroup]:
    """A group class that knows these lazy commands."""
    return type("VolccliGroup", (LazyGroup,), {"lazy": {spec.name: spec for spec in commands}})
