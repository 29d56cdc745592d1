"""The README cannot drift: its reference is generated from the app, its examples run.

Every line of a ```sh block that starts with `volccli ` (with its `\\` continuation lines)
runs on its own against the built-in sandbox, with a fresh configuration, in a fresh
folder that holds small images under the names the README uses. A file written in the
same block with `cat > FILE <<'EOF'` is created first, so new sections (batch files,
say) can carry their own inputs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from helpers_everyday import Run, invoke, write_image

from volccli import docs

README = Path(__file__).resolve().parents[1] / "README.md"
IMAGE_NAME = re.compile(r"(?<![\w/.-])([\w-]+\.(?:jpg|jpeg|png|webp))\b", re.IGNORECASE)
HEREDOC = re.compile(r"^cat > (\S+) <<-?'?(\w+)'?\s*$")
MASK_WORDS = ("mask", "edges")  # single-channel inputs

# Examples that cannot run here, each with the reason. Match on the start of the command.
SKIP: dict[str, str] = {
    "volccli sandbox serve": "serves until stopped",
    "volccli --profile work config show": (
        "needs the profile that the lines before it make; examples run one at a time"
    ),
}
# `config set KEY` with no value prompts; the test answers through --stdin instead.
PROMPTED = re.compile(r"^volccli (?:.*\s)?config set (?:--profile \S+ )?(\w+)$")


@dataclass(frozen=True)
class Example:
    block: int
    line: int
    text: str  # the command as one line

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.text[:60]}"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence; identifies the block
    lines: list[str]


def sh_blocks(text: str) -> Iterator[Block]:
    lines = text.splitlines()
    inside, start, body = False, 0, []
    for number, line in enumerate(lines, 1):
        if not inside and line.strip() in ("```sh", "```bash", "```shell"):
            inside, start, body = True, number, []
        elif inside and line.strip() == "```":
            inside = False
            yield Block(start, body)
        elif inside:
            body.append(line)


def examples(text: str) -> list[Example]:
    found = []
    for block in sh_blocks(text):
        pending: list[str] = []
        first = 0
        for offset, raw in enumerate(block.lines, 1):
            line = raw.strip()
            if pending:
                pending.append(line.rstrip("\\").strip())
                if not line.endswith("\\"):
                    found.append(Example(block.line, first, " ".join(pending)))
                    pending = []
            elif line.startswith("volccli "):
                first = block.line + offset
                if line.endswith("\\"):
                    pending = [line.rstrip("\\").strip()]
                else:
                    found.append(Example(block.line, first, line))
    return found


def heredocs(block: Block) -> dict[str, str]:
    files: dict[str, str] = {}
    lines = iter(block.lines)
    for line in lines:
        match = HEREDOC.match(line.strip())
        if match:
            name, end = match.groups()
            body = []
            for inner in lines:
                if inner.strip() == end:
                    break
                body.append(inner)
            files[name] = "\n".join(body) + "\n"
    return files


README_TEXT = README.read_text(encoding="utf-8")
EXAMPLES = examples(README_TEXT)
BLOCK_FILES = {block.line: heredocs(block) for block in sh_blocks(README_TEXT)}


def skip_reason(example: Example) -> str | None:
    for start, reason in SKIP.items():
        if example.text.startswith(start):
            return reason
    return None


def test_readme_has_examples_to_run() -> None:
    assert len(EXAMPLES) >= 10
    commands = {shlex.split(e.text, comments=True)[1] for e in EXAMPLES}
    assert {"txt2img", "edit", "outpaint", "product-style", "controlnet", "call"} <= commands


def test_example_extraction_joins_continuations() -> None:
    text = "```sh\nvolccli a \\\n    --b c \\\n    --d\necho x\nvolccli e # note\n```\n"
    found = examples(text)
    assert [e.text for e in found] == ["volccli a --b c --d", "volccli e # note"]
    assert [e.line for e in found] == [2, 6]


def prepare_inputs(folder: Path, example: Example) -> None:
    for name, content in BLOCK_FILES.get(example.block, {}).items():
        (folder / name).write_text(content, encoding="utf-8")
    for name in IMAGE_NAME.findall(example.text):
        path = folder / name
        if path.exists():
            continue
        if any(word in name.lower() for word in MASK_WORDS):
            write_image(path, 256, 192, mode="L", colour=255)
        else:
            write_image(path, 256, 192)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_readme_example_runs_against_the_sandbox(
    example: Example,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = skip_reason(example)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    prepare_inputs(tmp_path, example)
    run = run_example(example, capsys, monkeypatch)
    assert run.code == 0, (
        f"README line {example.line} failed with exit {run.code}: {example.text}\n{run.err}\n"
        "(an example needing another input file can create it in its block with "
        "`cat > FILE <<'EOF'`, or be listed in SKIP in tests/test_docs.py with the reason)"
    )
    for line in run.out.splitlines():
        if line.endswith((".png", ".jpg", ".jpeg", ".webp")):
            assert Path(line).is_file(), line


def run_example(
    example: Example, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Run:
    """Run one example in-process; a trailing `> FILE` writes stdout there, as a shell would."""
    argv = shlex.split(example.text, comments=True)
    assert argv[0] == "volccli"
    target = None
    if len(argv) > 2 and argv[-2] == ">":
        target = Path(argv[-1]).expanduser()  # HOME is a temporary folder in tests
        argv = argv[:-2]
    unsupported = {"|", "&&", "||", ";", ">", ">>", "<"} & set(argv)
    assert not unsupported, f"README line {example.line}: shell syntax {unsupported} in an example"
    stdin = None
    if PROMPTED.match(" ".join(argv)):
        argv.append("--stdin")
        stdin = "example-value-from-stdin\n"
    run = invoke(["--sandbox", *argv[1:]], capsys, monkeypatch, stdin=stdin)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(run.out, encoding="utf-8")
        return Run(run.code, "", run.err)
    return run


# --- the reference --------------------------------------------------------------------

# The reference is written in the help notation of Typer 0.29 and later (`--width <int>`,
# usage `{KEY} [value]`), as `volccli COMMAND --help` shows it there. Older Typers in the
# supported range show the same values as `INTEGER` (and 0.26 shows usage as
# `KEY [VALUE]`); with those, the reference is compared with that notation left out: the
# commands, option names, usage up to [OPTIONS] and every help text must still match.
README_NOTATION = (0, 29)
TYPER_WRITES_IT = tuple(int(part) for part in typer.__version__.split(".")[:2]) >= README_NOTATION
OPTION_CELL = re.compile(r"^(\| `-[\w-]+(?:(?:, | / )-[\w-]+)*)[^`]*`", re.MULTILINE)
USAGE_LINE = re.compile(r"^(volccli [^\n]*?\[OPTIONS\]).*$", re.MULTILINE)


def notation_free(text: str) -> str:
    """The reference without how values are written: option names and usage heads only."""
    return USAGE_LINE.sub(r"\1", OPTION_CELL.sub(r"\1`", text))


def in_this_notation(text: str) -> str:
    return text if TYPER_WRITES_IT else notation_free(text)


def test_readme_reference_is_current() -> None:
    assert docs.START in README_TEXT and docs.END in README_TEXT
    assert in_this_notation(docs.current_section(README_TEXT)) == in_this_notation(
        docs.reference_markdown()
    ), f"README.md's reference section is stale; run `{docs.REGENERATE}`"


def test_notation_free_keeps_names_and_drops_value_notation() -> None:
    rows = "| `-W, --width <int>` | Width. |\n| `--wm / --no-wm` | Mark. |\n| `PROMPT` | P. |\n"
    older = "| `-W, --width INTEGER` | Width. |\n| `--wm / --no-wm` | Mark. |\n| `PROMPT` | P. |\n"
    assert notation_free(rows) == notation_free(older)
    assert notation_free(rows).startswith("| `-W, --width` | Width. |\n| `--wm / --no-wm` |")
    assert notation_free(rows.replace("Width.", "Height.")) != notation_free(older)
    usage = "volccli config set [OPTIONS] {KEY} [value]\n"
    assert notation_free(usage) == notation_free("volccli config set [OPTIONS] KEY [VALUE]\n")
    assert notation_free(usage) != notation_free("volccli config get [OPTIONS] KEY\n")


def test_every_command_and_option_has_help() -> None:
    missing = []
    commands = list(docs.walk())
    assert {entry.path for entry in commands} >= {
        "volccli txt2img",
        "volccli edit",
        "volccli outpaint",
        "volccli product-style",
        "volccli controlnet",
        "volccli call",
        "volccli doctor",
        "volccli completion",
        "volccli config set",
        "volccli sandbox serve",
    }
    for entry in commands:
        if not docs.first_paragraph(entry.command.help):
            missing.append(entry.path)
        for param in docs.params(entry.command, entry.ctx):
            if not docs.param_help(param):
                missing.append(f"{entry.path} {docs.declaration(param, entry.ctx)}")
    root = docs.root_context()
    for param in docs.params(root.command, root):
        if not docs.param_help(param):
            missing.append(f"volccli {docs.declaration(param, root)}")
    assert missing == []


# What `--help` adds after an option's own help, as it shows it: "[default: 20]".
ADDED = re.compile(r"\[(?:default|env var): [^\]]*\]")
FLAG = re.compile(r"(?<![\w-])--?\w[\w-]*")
GLOBALS = "Global options"


@dataclass(frozen=True)
class Section:
    rows: list[tuple[str, str]]  # (how it is written, description)
    links_globals: bool


def reference_sections(text: str) -> dict[str, Section]:
    """The generated reference by heading: `volccli config set`, or `Global options`."""
    sections: dict[str, Section] = {}
    for chunk in text.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        rows = []
        for line in body.splitlines():
            if line.startswith("| `"):
                written, _, description = line[3:].partition("` | ")
                rows.append((written.replace("\\|", "|"), description.removesuffix(" |")))
        sections[heading.strip("`")] = Section(rows, f"({docs.GLOBAL_ANCHOR})" in body)
    return sections


def default_shown(param: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    """The default `--help` shows for a parameter, or None: its show_default text, else
    its default when shown (a flag that is off by default shows none; a pair of flags
    shows the one in force)."""
    if isinstance(param.show_default, str):
        return f"({param.show_default})"
    if not (param.show_default or ctx.show_default):
        return None
    default = param.get_default(ctx, call=False)
    if default is None:
        return None
    if callable(default):
        return "(dynamic)"
    if getattr(param, "is_bool_flag", False):
        if param.secondary_opts:
            return (param.opts if default else param.secondary_opts)[0].lstrip("-/")
        return str(default) if default else None
    if isinstance(default, (list, tuple)):
        return ", ".join(str(item) for item in default) or None
    return str(getattr(default, "value", default))


def envvar_shown(param: typer.core.TyperOption) -> str | None:
    envvar = param.envvar if getattr(param, "show_envvar", False) else None
    if not envvar:
        return None
    return envvar if isinstance(envvar, str) else ", ".join(envvar)


def find_row(
    param: typer.core.TyperOption, ctx: typer.Context, own: Section, root: Section
) -> tuple[str, str] | None:
    """The parameter's row: in the command's table, or among the global options when
    the command's section sends the reader there."""
    if param.param_type_name == "argument":
        name = str(param.metavar or param.name.upper())
        matches = [row for row in own.rows if row[0] == name]
    else:
        flags = {*param.opts, *param.secondary_opts}
        matches = [row for row in own.rows if set(FLAG.findall(row[0])) == flags]
        if not matches and own.links_globals and param.name in docs.global_names():
            matches = [row for row in root.rows if set(FLAG.findall(row[0])) == flags]
    return matches[0] if matches else None


def test_reference_has_every_option_and_default_that_help_shows() -> None:
    sections = reference_sections(docs.reference_markdown())
    root_ctx = docs.root_context()
    checks = [(GLOBALS, root_ctx.command, root_ctx)]
    checks += [(entry.path, entry.command, entry.ctx) for entry in docs.walk()]
    missing: list[str] = []
    defaults: set[tuple[str, str, str]] = set()
    for heading, command, ctx in checks:
        assert heading in sections, f"no section for {heading}"
        for param in docs.params(command, ctx):
            if param.hidden and heading != GLOBALS:
                continue  # not in this command's --help (the root's are all listed)
            where = f"{heading} {'/'.join(param.opts)}"
            row = find_row(param, ctx, sections[heading], sections[GLOBALS])
            if row is None:
                missing.append(f"{where}: no row")
                continue
            default = default_shown(param, ctx)
            if default is not None:
                defaults.add((heading, param.opts[0], default))
                if f"[default: {default}]" not in row[1]:
                    missing.append(f"{where}: no [default: {default}]")
            envvar = envvar_shown(param)
            if envvar is not None and f"[env var: {envvar}]" not in row[1]:
                missing.append(f"{where}: no [env var: {envvar}]")
    assert missing == []
    # The defaults the walk found are the ones help shows, so the check above has teeth.
    assert ("volccli history", "--limit", "20") in defaults
    assert ("volccli sandbox serve", "--port", "8765") in defaults


def test_config_commands_list_their_own_profile_option() -> None:
    sections = reference_sections(docs.reference_markdown())
    for path in ("set", "get", "unset", "show"):
        section = sections[f"volccli config {path}"]
        assert not section.links_globals
        assert any(set(FLAG.findall(written)) == {"-P", "--profile"} for written, _ in section.rows)


def test_reference_carries_every_default_and_variable_the_rendered_help_shows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read off the help as users see it: each bracket it adds is in the reference."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: no bracket is wrapped
    sections = reference_sections(docs.reference_markdown())
    global_text = " ".join(text for _, text in sections[GLOBALS].rows)
    missing = []
    seen = 0
    for entry in docs.walk():
        run = invoke([*entry.path.split()[1:], "--help"], capsys, monkeypatch)
        assert run.code == 0, run.err
        section = sections[entry.path]
        text = " ".join(description for _, description in section.rows)
        if section.links_globals:
            text += " " + global_text
        for added in ADDED.findall(run.out):
            seen += 1
            if added not in text:
                missing.append(f"{entry.path}: {added}")
    assert seen > 0
    assert missing == []


def test_write_replaces_only_the_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nbefore\n\n{docs.START}\nSTALE-TEXT\n{docs.END}\n\nafter\n")
    assert docs.main(["--check", "--readme", str(readme)]) == 1
    assert docs.main(["--write", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# t\n\nbefore\n\n") and text.endswith(f"{docs.END}\n\nafter\n")
    assert "STALE-TEXT" not in text and "### `volccli doctor`" in text
    assert docs.main(["--check", "--readme", str(readme)]) == 0


def test_help_text_is_unescaped_for_markdown() -> None:
    assert docs.help_text("Range \\[1, 30]. \\[default: 3.0]\n  more") == (
        "Range [1, 30]. [default: 3.0] more"
    )
    assert docs.cell("jsonl|csv") == "jsonl\\|csv"


def test_the_readme_explains_every_name_token() -> None:
    from volccli.output import TOKENS

    readme = README.read_text(encoding="utf-8")
    for token, meaning in TOKENS.items():
        assert f"| `{{{token}}}` | {meaning} |" in readme, token


def test_batch_output_help_says_what_batch_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch shares -o with the single commands but never writes to stdout: its help
    must not offer '-', and must say where the rows' output_dir folders go."""
    from volccli.errors import ExitCode

    _, description = next(
        row
        for row in reference_sections(docs.reference_markdown())["volccli batch"].rows
        if "--output-dir" in FLAG.findall(row[0])
    )
    assert "stdout" not in description and "output_dir" in description
    batch = tmp_path / "jobs.jsonl"
    batch.write_text('{"command": "txt2img", "prompt": "a red fox"}\n', encoding="utf-8")
    run = invoke(["--sandbox", "batch", batch, "-o", "-"], capsys, monkeypatch)
    assert run.code == ExitCode.USAGE, run.err
    assert "give a folder with -o" in run.err and run.out == ""
