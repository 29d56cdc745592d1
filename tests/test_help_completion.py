"""Help reads right and completion completes: help printed once, flags shown as flags,
every fixed set of option values offered by bash, zsh and fish, values with spaces
accepted as one word, and clean errors for an unknown shell or a misplaced option."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_everyday import invoke

from volccli import docs
from volccli.cli import completion_cmd
from volccli.cli.batch_cmd import BATCH_OPTS
from volccli.cli.options import GLOBAL_OPTS, IMAGE_OPTS, OUTPUT_OPTS, REQUEST_OPTS, opt_choices
from volccli.config import SETTINGS
from volccli.kinds import KINDS, LIGHT_POSITIONS

REPO = Path(__file__).resolve().parents[1]
BASH_SCRIPT = REPO / "completions" / completion_cmd.FILES["bash"]
BINARY = Path(sys.executable).parent / "volccli"
GLOBAL_NAMES = frozenset(opt.param for opt in GLOBAL_OPTS)


def entries() -> Iterator[docs.Entry]:
    """Every command of the app, built, with the context it is reached in."""
    return docs.walk()


# --- help -------------------------------------------------------------------------


@pytest.mark.parametrize("group", [[], ["config"], ["task"], ["sandbox"]], ids=str)
def test_a_group_without_its_command_prints_its_help_once(
    group: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bare = invoke(group, capsys)
    asked = invoke([*group, "--help"], capsys)
    assert bare.code == 0 == asked.code
    assert bare.out.count("Usage:") == 1
    assert bare.out == asked.out
    assert bare.err == ""


def test_no_flag_is_shown_as_taking_a_value() -> None:
    flags = values = 0
    root = docs.root_context()
    for command, ctx in [(root.command, root), *((e.command, e.ctx) for e in entries())]:
        for param in command.get_params(ctx):
            if param.param_type_name != "option":
                continue
            shown = param.display_type_rich(ctx=ctx)
            if param.is_flag:
                flags += 1
                assert not shown, f"{ctx.command_path} {param.opts[0]} shows {shown!r}"
            else:
                values += 1
                assert shown, f"{ctx.command_path} {param.opts[0]} shows no value"
    assert flags > 100 and values > 100  # the walk really saw the commands


@pytest.mark.parametrize(
    ("command", "flags", "valued"),
    [
        (["txt2img"], ["--json", "--help", "--rephraser", "--sandbox"], {"--width": "<int>"}),
        (["batch"], ["--force", "--keep-going"], {"--format": "jsonl|csv", "--jobs": "N"}),
        (["config", "set"], ["--stdin"], {"--profile": "<str>"}),
        (["sandbox", "serve"], ["--allow-remote"], {"--port": "<int>"}),
        ([], ["--version", "--verbose"], {}),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_help_text_lists_flags_bare_and_values_with_their_metavar(
    command: list[str],
    flags: list[str],
    valued: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = invoke([*command, "--help"], capsys)
    assert run.code == 0
    assert "<bool>" not in run.out
    for flag in flags:
        line = next(line for line in run.out.splitlines() if f" {flag} " in line)
        assert not re.search(r"<\w+>", line), line
    for option, metavar in valued.items():
        line = next(line for line in run.out.splitlines() if f" {option} " in line)
        assert metavar in line, line


def test_a_flag_still_refuses_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    run = invoke(["txt2img", "a cat", "--json=true", "--dry-run"], capsys)
    assert run.code == 2 and len(run.err_lines) == 1
    assert "--json" in run.err_lines[0]


def test_root_help_says_where_the_global_options_go(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(invoke(["--help"], capsys).out.split())
    assert "before or after" not in text
    assert "go before the command (volccli --sandbox txt2img …)" in text
    # The commands it names as taking them after the command do take them there.
    named = re.search(r"whose --help lists them \((.*?)\), after it", text)
    assert named is not None, text
    takes_after = {
        e.path.removeprefix("volccli ")
        for e in entries()
        if GLOBAL_NAMES.issubset(p.name for p in e.command.get_params(e.ctx))
    }
    generation = set(KINDS) | {"call"}
    assert generation <= takes_after
    listed = {"batch", "rerun", "inspect", "task get", "task wait", "task cancel", "history"}
    assert listed | {"doctor"} <= takes_after
    for word in ("batch", "rerun", "inspect", "task get/wait/cancel", "history", "doctor"):
        assert word in named.group(1)
    assert "config show" not in takes_after and "completion" not in takes_after


@pytest.mark.parametrize(
    ("args", "before"),
    [
        (["config", "show", "--sandbox"], "volccli --sandbox config show"),
        (["completion", "bash", "--quiet"], "volccli --quiet completion"),
        (["sandbox", "serve", "-q"], "volccli -q sandbox serve"),
        (["config", "show", "--auth", "gateway"], "volccli --auth … config show"),
    ],
)
def test_a_global_option_after_a_command_that_lacks_it_says_where_it_goes(
    args: list[str], before: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = invoke(args, capsys)
    assert run.code == 2 and run.out == ""
    assert len(run.err_lines) == 1
    assert "No such option" in run.err_lines[0] and before in run.err_lines[0]


def test_the_same_option_before_the_command_works(capsys: pytest.CaptureFixture[str]) -> None:
    run = invoke(["--quiet", "completion", "bash"], capsys)
    assert run.code == 0 and run.out == BASH_SCRIPT.read_text(encoding="utf-8")


@pytest.mark.parametrize("shell", ["powershell", "tcsh"])
def test_an_unsupported_shell_is_one_clean_line(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = invoke(["completion", shell], capsys)
    assert run.code == 2 and run.out == ""
    assert len(run.err_lines) == 1
    line = run.err_lines[0]
    assert line.startswith("volccli: error: ") and f"'{shell}'" in line
    assert all(name in line for name in ("bash", "zsh", "fish"))
    assert "Value error" not in line


def loaded_after(runs: list[list[str]], wanted: str) -> list[str]:
    """The modules matching ``wanted`` (a Python condition on ``name``) that a fresh
    process has imported after running volccli with each of ``runs``."""
    code = (
        "import sys\n"
        "from volccli.cli import main\n"
        f"for args in {runs!r}:\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        f"print('LOADED', sorted(name for name in sys.modules if {wanted}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_process_env(),
        timeout=60,
        check=False,
    )
    found = re.search(r"^LOADED (\[.*\])$", done.stdout, re.MULTILINE)
    assert found, done.stdout[-300:] + done.stderr
    return list(json.loads(found[1].replace("'", '"')))


def test_help_and_version_stay_light() -> None:
    heavy = ("requests", "PIL", "volccli.sandbox", "volccli.config", "pydantic")
    runs = [[], ["--help"], ["--version"], ["config"]]
    assert loaded_after(runs, f"name in {heavy!r}") == []


def test_each_listed_summary_opens_the_commands_own_help() -> None:
    """The top-level help lists the table's summaries without importing the modules."""
    from volccli.cli import OTHER_COMMANDS

    built = {entry.path: entry.command for entry in entries()}
    for spec in OTHER_COMMANDS:
        own_help = built[f"volccli {spec.name}"].help
        assert own_help.split("\n\n")[0] == spec.help, spec.name


def test_a_generation_command_does_not_import_the_other_commands() -> None:
    assert loaded_after([["txt2img", "--help"]], "name.endswith('_cmd')") == []
    # and the check can see one when it is imported
    assert loaded_after([["config", "--help"]], "name.endswith('_cmd')") == [
        "volccli.cli.config_cmd"
    ]


def test_the_completion_variable_is_the_one_main_looks_for() -> None:
    import inspect

    from volccli import cli

    assert f'os.environ.get("{completion_cmd.COMPLETE_VAR}")' in inspect.getsource(cli.main)


# --- completion: which values ----------------------------------------------------


def complete_bash_protocol(
    words: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Ask the bash protocol in-process for the last word of ``words``."""
    completion_cmd.enable_shell_completion()
    monkeypatch.setenv(completion_cmd.COMPLETE_VAR, "complete_bash")
    monkeypatch.setenv("COMP_WORDS", " ".join(shlex.quote(word) for word in words))
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    run = invoke([], capsys)
    assert run.code == 0, run.err
    return run.out.splitlines()


def expected_choices() -> dict[str, tuple[str, ...]]:
    """Option -> its fixed values, from the tables the commands are made of."""
    found: dict[str, tuple[str, ...]] = {}
    for opt in (*GLOBAL_OPTS, *OUTPUT_OPTS, *REQUEST_OPTS, *IMAGE_OPTS, *BATCH_OPTS):
        if opt_choices(opt):
            found[opt.decls[0]] = opt_choices(opt)
    for kind in KINDS.values():
        for field in kind.fields:
            if field.choices and not field.positional:
                found[f"--{field.option}"] = tuple(map(str, field.choices))
    return found


def test_the_reported_options_have_their_documented_values() -> None:
    choices = expected_choices()
    assert choices["--auth"] == ("gateway", "official")
    assert choices["--on-exists"] == ("suffix", "skip", "overwrite", "fail")
    assert choices["--format"] == ("jsonl", "csv")
    assert choices["--on-filtered"] == ("fail", "skip", "reseed:3")
    assert choices["--light-position"] == LIGHT_POSITIONS
    # One list for the flag and the config setting it overrides.
    assert choices["--on-exists"] == SETTINGS["on_exists"].choices


def test_every_option_with_fixed_values_completes_them_on_every_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    choices = expected_choices()
    checked = set()
    root = docs.root_context()
    commands = [(root.command, []), *((e.command, e.path.split()[1:]) for e in entries())]
    for command, path in commands:
        for param in command.params:
            name = next((opt for opt in param.opts if opt.startswith("--")), "")
            if param.param_type_name != "option" or name not in choices:
                continue
            answer = complete_bash_protocol(["volccli", *path, name, ""], capsys, monkeypatch)
            assert answer == list(choices[name]), f"volccli {' '.join(path)} {name}"
            checked.add((" ".join(path), name))
    assert ("", "--auth") in checked  # the root's own, hidden from its help
    assert {("batch", "--format"), ("txt2img", "--on-exists"), ("rerun", "--on-exists")} <= checked
    assert ("product-style", "--light-position") in checked
    assert len(checked) > 30


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["volccli", "--auth", "o"], ["official"]),
        (["volccli", "edit", "--on-exists", "s"], ["suffix", "skip"]),
        (["volccli", "batch", "j.csv", "--on-filtered", "r"], ["reseed:3"]),
        (["volccli", "batch", "jobs.csv", "--format", "c"], ["csv"]),
        (
            ["volccli", "product-style", "x.png", "--light-position", "Top L"],
            ["Top Light", "Top Left Light"],
        ),
        (["volccli", "txt2img", "--output-dir", ""], [""]),  # none: the shell lists files
    ],
)
def test_values_complete_from_what_was_typed(
    words: list[str],
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert complete_bash_protocol(words, capsys, monkeypatch) == expected


# --- completion: in the real shells ----------------------------------------------


def _process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_VOLCCLI")}
    env["PATH"] = f"{BINARY.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _in_shell(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A shell run to its end, with volccli on its PATH; it must succeed."""
    done = subprocess.run(
        argv, env=_process_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def _needs(shell: str) -> str:
    found = shutil.which(shell)
    if found is None or not BINARY.exists():
        pytest.skip(f"needs {shell} and the volccli console script")
    return found


def test_bash_escapes_values_and_leaves_quoted_words_to_readline() -> None:
    """COMP_WORDS holds the words as typed; each case prints COMPREPLY, one per line."""
    bash = _needs("bash")
    cases = [
        ("volccli product-style x.png --light-position Top\\ R", 4),
        ("volccli product-style x.png --light-position Top\\ L", 4),
        ('volccli product-style x.png --light-position "Top R', 4),
        ("volccli product-style x.png --light-position 'Top R", 4),
        ("volccli --auth ''", 2),
        ("volccli txt2img --on-exists ov", 3),
        ("volccli batch jobs.csv --format ''", 4),
        ("volccli txt2img --output-dir ''", 3),
    ]
    lines = [f"source {shlex.quote(str(BASH_SCRIPT))}"]
    for words, cword in cases:
        # The words exactly as bash stores them: backslashes and open quotes kept.
        array = " ".join(shlex.quote(word) for word in _raw_words(words))
        lines += [
            f"COMP_WORDS=({array}); COMP_CWORD={cword}",
            "_volccli_completion volccli",
            'printf "%s\\n" "${COMPREPLY[@]}" "--"',
        ]
    done = _in_shell([bash, "--norc", "--noprofile", "-c", "\n".join(lines)])
    answers = [
        [line for line in block.split("\n") if line] for block in done.stdout.split("--\n")[:-1]
    ]
    assert answers == [
        ["Top\\ Right\\ Light"],
        ["Top\\ Light", "Top\\ Left\\ Light"],
        ["Top Right Light"],  # readline adds the closing quote
        ["Top Right Light"],
        ["gateway", "official"],
        ["overwrite"],
        ["jsonl", "csv"],
        [],  # no answer: COMPREPLY stays empty and bash completes file names
    ]
    # What bash makes of the escaped answer once accepted: one word.
    assert shlex.split(answers[0][0]) == ["Top Right Light"]


def _raw_words(line: str) -> list[str]:
    """Split a command line at unquoted, unescaped spaces, keeping quotes and escapes;
    an empty quoted word '' stands for the empty word being completed."""
    words = re.findall(r"""(?:\\.|"[^"]*"?|'[^']*'?|[^\s\\"'])+""", line)
    return ["" if word == "''" else word for word in words]


def test_fish_offers_each_value_as_one_candidate() -> None:
    fish = _needs("fish")
    script = REPO / "completions" / completion_cmd.FILES["fish"]
    commands = [
        "volccli product-style x.png --light-position Top",
        'volccli product-style x.png --light-position "Top L',
        "volccli --auth ",
        "volccli txt2img --on-exists ",
        "volccli batch jobs.csv --format ",
    ]
    body = "; ".join(
        [f"source {shlex.quote(str(script))}"]
        + [f"complete -C {_fish_quote(command)}; echo '#'" for command in commands]
    )
    done = _in_shell([fish, "--no-config", "-c", body])
    answers = [
        [line.split("\t")[0] for line in block.strip("\n").split("\n")]
        for block in done.stdout.split("#\n")[:-1]
    ]
    assert answers == [
        ["Top Left Light", "Top Light", "Top Right Light"],
        ["Top Left Light", "Top Light"],
        ["gateway", "official"],
        ["fail", "overwrite", "skip", "suffix"],
        ["csv", "jsonl"],
    ]


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Terminal:
    """An interactive shell on a pseudo-terminal, typed at like a person would."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        import fcntl
        import pty
        import struct
        import termios

        self.master, slave = pty.openpty()
        # Wide enough that the line never wraps (wrapping redraws would hide the text).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 300, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.seen = ""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """Read until ``pattern`` (a regex) appears in the screen text read so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.seen)
            if match:
                self.seen = self.seen[match.end() :]
                return match.group(0)
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                self.seen += _plain(chunk.decode(errors="replace"))
        raise AssertionError(f"no {pattern!r} on the terminal; it shows {self.seen[-400:]!r}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.master)


def _plain(text: str) -> str:
    """Terminal output without escape sequences, carriage returns or bells."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\x1b\][^\x07]*\x07", "", text)
    return text.replace("\r", "").replace("\x07", "")


SHELL_SETUP: dict[str, tuple[list[str], str]] = {
    "bash": (
        ["--noprofile", "--norc", "-i"],
        f"source {shlex.quote(str(BASH_SCRIPT))}; bind 'set bell-style none'",
    ),
    "zsh": (
        ["-f", "-i"],
        "autoload -Uz compinit; compinit -u; "
        f"source {shlex.quote(str(REPO / 'completions' / completion_cmd.FILES['zsh']))}",
    ),
}


@pytest.mark.parametrize("shell", sorted(SHELL_SETUP))
@pytest.mark.parametrize(
    "typed",
    [
        "volccli product-style x.png --light-position Top\\ R",
        'volccli product-style x.png --light-position "Top R',
    ],
    ids=["escaped", "quoted"],
)
def test_an_accepted_value_with_spaces_stays_one_argument(shell: str, typed: str) -> None:
    """Tab, then Enter: a shell function standing in for volccli prints its arguments
    (completion itself runs the real volccli through env)."""
    path = _needs(shell)
    flags, setup = SHELL_SETUP[shell]
    terminal = Terminal([path, *flags], _process_env(TERM="xterm", PS1="READY> "))
    try:
        terminal.type(f"{setup}; volccli() {{ printf '<%s>' \"$@\"; echo END; }}; PS1='READY> '\n")
        terminal.wait_for(r"READY> ")
        terminal.type(typed + "\t")
        terminal.wait_for(r"Right.{0,3}Light")
        terminal.type("\n")
        printed = terminal.wait_for(r"<product-style>.*END")
    finally:
        terminal.close()
    assert printed == "<product-style><x.png><--light-position><Top Right Light>END"
