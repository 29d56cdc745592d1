"""The README's command reference, generated from the app itself so that it cannot drift.

`python -m volccli.docs --write` rewrites the part of README.md between
``<!-- reference:start -->`` and ``<!-- reference:end -->``; `--check` exits 1 when it
is stale. The walk builds the lazily made generation commands too, so every command
and option that exists is listed, with its help and what `--help` adds to it
(default, environment variable, required).
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import typer.main

START = "<!-- reference:start -->"
END = "<!-- reference:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"
REGENERATE = "python -m volccli.docs --write"
GLOBAL_ANCHOR = "#global-options"
# Where Typer's help record separates what it adds to an option's help.
ADDED_ITEM = re.compile(r"; (?=env var: |default: |required$)")


@dataclass(frozen=True)
class Entry:
    """One command of the tree with the context it was reached in."""

    path: str  # "volccli config set"
    command: Any  # a Typer command or group (Click types)
    ctx: typer.Context


def root_context() -> typer.Context:
    from .cli import app

    group = typer.main.get_command(app)
    return typer.Context(group, info_name="volccli", **group.context_settings)


def walk(ctx: typer.Context | None = None) -> Iterator[Entry]:
    """Every visible command, depth first, in the order the help lists them."""
    ctx = ctx or root_context()
    group = ctx.command
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)  # builds a lazy command
        if command is None or command.hidden:
            continue
        sub = typer.Context(command, info_name=name, parent=ctx, **command.context_settings)
        yield Entry(sub.command_path, command, sub)
        if hasattr(command, "list_commands"):
            yield from walk(sub)


def global_names() -> frozenset[str]:
    from .cli.options import GLOBAL_OPTS

    return frozenset(opt.param for opt in GLOBAL_OPTS)


def params(command: Any, ctx: typer.Context) -> list[Any]:
    """Arguments and options as listed in help, without --help."""
    return [p for p in command.get_params(ctx) if p.name != "help"]


def help_text(text: str | None) -> str:
    """Help as plain Markdown-safe text: rich escapes undone, one line."""
    text = (text or "").replace("\\[", "[")
    return " ".join(text.split())


def first_paragraph(text: str | None) -> str:
    return help_text((text or "").strip().split("\n\n", 1)[0])


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def shown(param: Any) -> Any:
    """The parameter as help would show it: the root hides most global options to keep
    its help short, and the reference lists them anyway."""
    if not param.hidden:
        return param
    param = copy.copy(param)
    param.hidden = False
    return param


def declaration(param: Any, ctx: typer.Context) -> str:
    """How the parameter is written: `-W, --width <int>`, `PROMPT`."""
    if param.param_type_name == "argument":
        return str(param.metavar or param.name.upper())
    record = shown(param).get_help_record(ctx)
    return record[0] if record else ", ".join(param.opts)


def param_help(param: Any) -> str:
    """The help written for the parameter, without what Typer adds to it."""
    return help_text(getattr(param, "help", None))


def described(param: Any, ctx: typer.Context) -> str:
    """The help with what `--help` shows after it (environment variable, default,
    required), taken from Typer's help record, so the reference cannot say less."""
    own = getattr(param, "help", None) or ""
    record = shown(param).get_help_record(ctx)
    full = record[1] if record else own
    if not full.startswith(own):
        return help_text(full)
    added = full[len(own) :].strip()
    if added.startswith("[") and added.endswith("]"):
        # The record joins them as "[env var: X; default: Y]"; help shows one bracket each.
        added = " ".join(f"[{item}]" for item in ADDED_ITEM.split(added[1:-1]))
    return help_text(f"{own} {added}")


def usage(entry: Entry) -> str:
    pieces = entry.command.collect_usage_pieces(entry.ctx)
    return " ".join([entry.path, *pieces])


def options_table(rows: Sequence[tuple[str, str]]) -> list[str]:
    lines = ["| option | description |", "|---|---|"]
    lines += [f"| `{cell(decl)}` | {cell(text)} |" for decl, text in rows]
    return lines


def row(param: Any, ctx: typer.Context) -> tuple[str, str]:
    return declaration(param, ctx), described(param, ctx)


def command_section(entry: Entry, root_rows: dict[str, tuple[str, str]]) -> list[str]:
    """One command: its help, usage and options. A global option is left to the link to
    the global options only when the command takes all of them, exactly as the root
    does; one of the same name that differs (`config set -P`) gets its own row."""
    command, ctx = entry.command, entry.ctx
    lines = [f"### `{entry.path}`", "", first_paragraph(command.help), ""]
    lines += ["```text", usage(entry), "```", ""]
    visible = [p for p in params(command, ctx) if not p.hidden]
    takes_globals = root_rows.keys() <= {p.name for p in params(command, ctx)}
    own = [
        p
        for p in visible
        if not (takes_globals and p.name in root_rows and row(p, ctx) == root_rows[p.name])
    ]
    if own:
        lines += options_table([row(p, ctx) for p in own])
        lines.append("")
    if takes_globals:
        lines += [f"Also takes the [global options]({GLOBAL_ANCHOR}).", ""]
    return lines


def reference_markdown() -> str:
    """The Reference section: global options, then every command with its options."""
    ctx = root_context()
    root = ctx.command
    globals_ = global_names()
    lines = [
        "Generated from the commands themselves by `python -m volccli.docs --write`; "
        "`volccli COMMAND --help` shows the same.",
        "",
        "### Global options",
        "",
        "Display and connection options go before the command (`volccli --sandbox "
        "txt2img …`) or, for the commands whose options list them (the generation "
        "commands, `batch`, `rerun`, `inspect`, `task get/wait/cancel`, `history` and "
        "`doctor`), after it.",
        "",
    ]
    lines += options_table([row(p, ctx) for p in params(root, ctx)])
    lines.append("")
    root_rows = {p.name: row(p, ctx) for p in params(root, ctx) if p.name in globals_}
    for entry in walk(ctx):
        lines += command_section(entry, root_rows)
    return "\n".join(lines).rstrip("\n") + "\n"


def replace_section(readme: str, section: str) -> str:
    if START not in readme or END not in readme or readme.index(START) > readme.index(END):
        raise ValueError(f"README.md lacks {START} … {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{section}{END}{tail}"


def current_section(readme: str) -> str:
    """The text between the markers, as replace_section writes it."""
    _, rest = readme.split(START, 1)
    body, _ = rest.split(END, 1)
    return body[1:] if body.startswith("\n") else body


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = README
    if "--readme" in args:
        path = Path(args[args.index("--readme") + 1])
    section = reference_markdown()
    if "--write" in args:
        text = path.read_text(encoding="utf-8")
        updated = replace_section(text, section)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            sys.stderr.write(f"updated the reference in {path}\n")
        return 0
    if "--check" in args:
        if current_section(path.read_text(encoding="utf-8")) != section:
            sys.stderr.write(f"the reference in {path} is stale; run `{REGENERATE}`\n")
            return 1
        return 0
    sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
