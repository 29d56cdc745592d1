"""The bad-input catalogue, across every command: each row gets its documented exit code
and exactly one line on stderr naming the problem, with no traceback and no Rich panel,
and nothing is written (the working folder, the config folder and the data folder stay
as they were) and nothing is sent to the sandbox, so nothing is billed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import api_requests, run_cli, write_image
from tests.helpers_proof import snapshot
from volccli.errors import ExitCode
from volccli.sandbox import API_KEY, Sandbox

USAGE, CONFIG, OUTPUT = ExitCode.USAGE, ExitCode.CONFIG, ExitCode.OUTPUT
PANEL_CHARS = "╭╮╰╯│─┃━"
CHANGED_INPUT = "made/changed.png"  # an edit whose input was changed afterwards
MADE = "made/fox.png"  # a txt2img result with its recipe


@dataclass(frozen=True)
class Bad:
    args: tuple[str, ...]
    code: ExitCode
    words: tuple[str, ...]
    stdin: bytes | None = None
    config: str | bytes | None = None  # config.toml written before the run
    env: Mapping[str, str | None] = field(default_factory=dict)
    stdout: bool = False  # doctor prints its checks on stdout
    history: bytes | None = None  # history.db written before the run


def bad(*args: str, code: ExitCode = USAGE, words: tuple[str, ...] = (), **kw: object) -> Bad:
    return Bad(tuple(args), code, words, **kw)  # type: ignore[arg-type]  # the fields above


NO_CREDENTIALS = {"VOLCCLI_API_KEY": None, "VOLCCLI_BASE_URL": None}
ONE_ROW = "ok.jsonl"

CATALOGUE: dict[str, Bad] = {
    # --- generation commands: option values ---
    "--on-exists maybe": bad(
        "txt2img", "x", "-o", "out", "--on-exists", "maybe", words=("--on-exists 'maybe'",)
    ),
    "--count 0": bad("txt2img", "x", "-o", "out", "--count", "0", words=("--count 0",)),
    "--base-url with a password in it": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "--base-url",
        "http://me:hunter2@127.0.0.1:9",
        words=("carries credentials before '@'",),
    ),
    "VOLCCLI_BASE_URL with a password in it": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        code=CONFIG,
        words=("carries credentials",),
        env={"VOLCCLI_BASE_URL": "http://me:hunter2@127.0.0.1:9", "VOLCCLI_API_KEY": "k"},
    ),
    "edit - - (two arguments from stdin)": bad(
        "edit", "-", "-", "-o", "out", stdin=b"\x89PNG", words=("PROMPT and IMAGE both",)
    ),
    "-n far beyond the limit": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "-n",
        "99999999999999999999999",
        "--dry-run",
        words=("above 10,000",),
    ),
    "--seed near the top with -n": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "-s",
        "2147483647",
        "-n",
        "2",
        words=("seeds up to 2147483648", "at most 2147483646"),
    ),
    "--poll-interval inf with --async": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "--async",
        "--poll-interval",
        "inf",
        words=("--poll-interval", "numbers above 0"),
    ),
    "-n 3 with one name and --on-exists overwrite": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "-n",
        "3",
        "--name",
        "fixed",
        "--on-exists",
        "overwrite",
        words=("all 3 images the same name", "{index}"),
    ),
    "--width without its value": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "--width",
        words=("'--width' requires an argument;", "see 'volccli txt2img --help'"),
    ),
    "--timeout 0": bad("txt2img", "x", "-o", "out", "--timeout", "0", words=("--timeout",)),
    "--retries abc": bad("txt2img", "x", "-o", "out", "--retries", "abc", words=("'--retries'",)),
    "--on-filtered reseed:x": bad(
        "edit", "good.png", "x", "-o", "out", "--on-filtered", "reseed:x", words=("reseed:3",)
    ),
    "--auth magic": bad(
        "txt2img", "x", "-o", "out", "--auth", "magic", words=("--auth 'magic'", "gateway")
    ),
    "--poll-interval -1 with --async": bad(
        "txt2img", "x", "-o", "out", "--async", "--poll-interval", "-1", words=("--poll-interval",)
    ),
    "--wait-timeout 0 with --async": bad(
        "call",
        "jimeng_i2i_v30",
        "--image",
        "good.png",
        "-o",
        "out",
        "--async",
        "--wait-timeout",
        "0",
        words=("--wait-timeout",),
    ),
    "--max-image-bytes -1": bad(
        "edit",
        "good.png",
        "x",
        "-o",
        "out",
        "--max-image-bytes",
        "-1",
        words=("--max-image-bytes must be at least 1",),
    ),
    "--composition diagonal": bad(
        "product-style",
        "good.png",
        "--ref",
        "good.png",
        "-o",
        "out",
        "--composition",
        "diagonal",
        words=("--composition 'diagonal'",),
    ),
    "--aspect 0:9": bad(
        "outpaint", "good.png", "-o", "out", "--aspect", "0:9", words=("--aspect '0:9'",)
    ),
    # --- conflicting options ---
    "-o - with -n 2": bad("edit", "good.png", "x", "-o", "-", "-n", "2", words=("-o -", "-n")),
    "-o - with --json": bad("txt2img", "x", "-o", "-", "--json", words=("-o -", "--json")),
    "--mask with --expand": bad(
        "outpaint",
        "good.png",
        "--mask",
        "good.png",
        "--expand",
        "0.2",
        "-o",
        "out",
        words=("--mask", "--expand"),
    ),
    # --- name templates ---
    "--name climbing out": bad(
        "txt2img", "x", "-o", "out", "--name", "a/../../{seed}", words=("'..'",)
    ),
    "--name absolute": bad(
        "txt2img", "x", "-o", "out", "--name", "/tmp/{seed}", words=("absolute path",)
    ),
    "--name in the home folder": bad(
        "controlnet",
        "x",
        "--control",
        "canny:good.png",
        "-o",
        "out",
        "--name",
        "~/{seed}",
        words=("absolute path",),
    ),
    "--name unknown token": bad(
        "txt2img", "x", "-o", "out", "--name", "{seed}_{width}", words=("unknown token {width}",)
    ),
    "--name bad spec": bad(
        "txt2img", "x", "-o", "out", "--name", "{prompt:abc}", words=("must be a length",)
    ),
    "--name unclosed brace": bad(
        "txt2img", "x", "-o", "out", "--name", "{prompt", words=("is malformed",)
    ),
    "name with a control character in the config": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        config='[profiles.default]\nname = "a\\u0000b"\n',
        code=CONFIG,
        words=("control character",),
    ),
    "name climbing out in the config": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        config="[profiles.default]\nname = '../up'\n",
        code=CONFIG,
        words=("'..'",),
    ),
    # --- prompts, files, images, URLs ---
    "prompt with surrogate escapes": bad(
        "txt2img",
        "caf\udce9 au lait",
        "-o",
        "out",
        words=("'caf\\xe9 au lait' is not valid UTF-8", "re-encode the text"),
    ),
    "@FILE prompt not UTF-8": bad(
        "txt2img", "@latin1.txt", "-o", "out", words=("latin1.txt is not valid UTF-8",)
    ),
    "stdin prompt not UTF-8": bad(
        "txt2img", "-", "-o", "out", stdin=b"caf\xe9\n", words=("stdin is not valid UTF-8",)
    ),
    "--ref is text": bad(
        "product-style", "good.png", "--ref", "notes.png", "-o", "out", words=("notes.png is text",)
    ),
    "--control without an image": bad(
        "controlnet", "x", "--control", "canny", "-o", "out", words=("TYPE:IMAGE[:STRENGTH]",)
    ),
    "--control image missing": bad(
        "controlnet",
        "x",
        "--control",
        "depth:missing.png",
        "-o",
        "out",
        words=("missing.png: no such file",),
    ),
    "URL without a host": bad("edit", "http://", "x", "-o", "out", words=("has no host",)),
    "call without a req_key": bad("call", "-o", "out", words=("call needs a REQ_KEY",)),
    "call --body a folder": bad(
        "call",
        "jimeng_i2i_v30",
        "--image",
        "good.png",
        "--body",
        "adir",
        "-o",
        "out",
        words=("--body adir",),
    ),
    "--base-url with a query": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "--base-url",
        "http://127.0.0.1:9/?key=QSECRET",
        words=("--base-url", "has a query string", "https://host[:port][/path]"),
    ),
    "--endpoint ftp": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "--auth",
        "official",
        "--endpoint",
        "ftp://example.com",
        env={"VOLCCLI_ACCESS_KEY": "AKLTexample", "VOLCCLI_SECRET_KEY": "not-a-real-secret"},
        words=("endpoint 'ftp://example.com'",),
    ),
    "output folder is a file": bad(
        "txt2img",
        "x",
        "-o",
        "notes.png",
        code=OUTPUT,
        words=("cannot write to notes.png", "is a file, not a folder"),
    ),
    # --- config files and profiles ---
    "malformed config.toml": bad(
        "txt2img", "x", "-o", "out", config="[profiles\n", code=CONFIG, words=("not valid TOML",)
    ),
    "unknown profile": bad(
        "edit",
        "good.png",
        "x",
        "-o",
        "out",
        "--profile",
        "ghost",
        code=CONFIG,
        words=("unknown profile 'ghost'",),
    ),
    "half a key pair": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        "--auth",
        "official",
        code=CONFIG,
        env={"VOLCCLI_ACCESS_KEY": "AKLTexample"},
        words=("secret_key is missing",),
    ),
    "base_url in the config not http": bad(
        "txt2img",
        "x",
        "-o",
        "out",
        config="[profiles.default]\nbase_url = 'ftp://x'\n",
        env={"VOLCCLI_BASE_URL": None},
        code=CONFIG,
        words=("from profile 'default'",),
    ),
    # --- batch ---
    "batch file is a folder": bad("batch", "adir", "-o", "out", words=("adir is a folder",)),
    "batch file missing": bad(
        "batch", "missing.jsonl", "-o", "out", words=("cannot read the batch file",)
    ),
    "batch file not UTF-8": bad(
        "batch", "latin1.jsonl", "-o", "out", words=("latin1.jsonl is not UTF-8",)
    ),
    "batch from stdin not UTF-8": bad(
        "batch", "-", "-o", "out", stdin=b'{"prompt": "\xff"}\n', words=("<stdin> is not UTF-8",)
    ),
    "batch line not JSON": bad(
        "batch", "malformed.jsonl", "-o", "out", words=("malformed.jsonl:2: not JSON",)
    ),
    "batch row with an unknown command": bad(
        "batch", "unknown.jsonl", "-o", "out", words=("unknown.jsonl:1: unknown command 'paint'",)
    ),
    "batch row folder climbing out": bad(
        "batch", "climb.jsonl", "-o", "out", words=("output_dir '../elsewhere'",)
    ),
    "batch row folder absolute": bad(
        "batch", "absolute.jsonl", "-o", "out", words=("output_dir '/tmp/volccli-abs'",)
    ),
    "batch row image missing": bad(
        "batch", "noimage.csv", "-o", "out", words=("noimage.csv:2:", "nothere.png")
    ),
    "batch without jobs": bad("batch", "empty.jsonl", "-o", "out", words=("has no jobs",)),
    "batch --name climbing out": bad(
        "batch", ONE_ROW, "-o", "out", "--name", "../{seed}", words=("'..'",)
    ),
    "batch -j 0": bad(
        "batch", ONE_ROW, "-o", "out", "-j", "0", words=("--jobs must be at least 1, not 0",)
    ),
    "batch --format xml": bad(
        "batch", ONE_ROW, "-o", "out", "--format", "xml", words=("--format 'xml'",)
    ),
    "batch -o -": bad("batch", ONE_ROW, "-o", "-", words=("-o -",)),
    "batch --on-filtered reseed:x": bad(
        "batch", ONE_ROW, "-o", "out", "--on-filtered", "reseed:x", words=("reseed:3",)
    ),
    "batch --poll-interval 0": bad(
        "batch", ONE_ROW, "-o", "out", "--async", "--poll-interval", "0", words=("--poll-interval",)
    ),
    "batch with a bad timeout in the config": bad(
        "batch",
        ONE_ROW,
        "-o",
        "out",
        config="[profiles.default]\ntimeout = 'abc'\n",
        code=CONFIG,
        words=("timeout = 'abc'",),
    ),
    # --- task ---
    "task get with an empty id": bad(
        "task", "get", "high_aes_general_v14", "", words=("TASK_ID is empty",)
    ),
    "task wait --on-exists maybe": bad(
        "task",
        "wait",
        "high_aes_general_v14",
        "1",
        "-o",
        "out",
        "--on-exists",
        "maybe",
        words=("--on-exists 'maybe'",),
    ),
    "task wait --wait-timeout -1": bad(
        "task",
        "wait",
        "high_aes_general_v14",
        "1",
        "-o",
        "out",
        "--wait-timeout",
        "-1",
        words=("--wait-timeout",),
    ),
    "task wait --name climbing out": bad(
        "task",
        "wait",
        "high_aes_general_v14",
        "1",
        "-o",
        "out",
        "--name",
        "../x",
        words=("'..'",),
    ),
    "task get without credentials": bad(
        "task",
        "get",
        "high_aes_general_v14",
        "1",
        env=NO_CREDENTIALS,
        code=CONFIG,
        words=("no credentials",),
    ),
    "task unknown subcommand": bad("task", "fetch", "x", words=("No such command 'fetch'",)),
    # --- inspect and rerun ---
    "inspect a missing file": bad("inspect", "missing.png", words=("missing.png: no such file",)),
    "inspect an image without recipe": bad("inspect", "good.png", words=("has no volccli recipe",)),
    "inspect a broken sidecar": bad("inspect", "broken.png", words=("has no volccli recipe",)),
    "inspect another tool's sidecar": bad(
        "inspect", "foreign.png", words=("has no volccli recipe",)
    ),
    "inspect a folder": bad("inspect", "adir", words=("adir: a folder",)),
    "rerun with a changed input": bad(
        "rerun", CHANGED_INPUT, "-o", "out", words=("has changed since the image was made",)
    ),
    "rerun --set malformed": bad(
        "rerun", MADE, "-o", "out", "--set", "bad key=1", words=("--set 'bad key=1'",)
    ),
    "rerun --on-exists maybe": bad(
        "rerun", MADE, "-o", "out", "--on-exists", "maybe", words=("--on-exists 'maybe'",)
    ),
    "rerun an image without recipe": bad(
        "rerun", "good.png", "-o", "out", words=("has no volccli recipe",)
    ),
    # --- history ---
    "history -n -1": bad("history", "-n", "-1", words=("-n -1",)),
    "history -n abc": bad("history", "-n", "abc", words=("'--limit'",)),
    "history unknown subcommand": bad("history", "clear", words=("No such command 'clear'",)),
    "history database damaged": bad(
        "history",
        "--search",
        "fox",
        history=b"not a database" * 200,
        words=("cannot read the history", "file is not a database"),
    ),
    # --- config ---
    "config set an unknown setting": bad(
        "config", "set", "colour", "red", words=("unknown setting 'colour'",)
    ),
    "config set a secret on argv": bad(
        "config", "set", "secret_key", "hunter2", words=("not accepted on the command line",)
    ),
    "config set a value of the wrong type": bad(
        "config", "set", "timeout", "soon", words=("timeout = 'soon'",)
    ),
    "config set a base_url that is no URL": bad(
        "config", "set", "base_url", "relay.example", words=("not an http(s) URL",)
    ),
    "config set --stdin with nothing": bad(
        "config", "set", "api_key", "--stdin", stdin=b"", words=("empty value for api_key",)
    ),
    "config set a value and --stdin": bad(
        "config", "set", "region", "cn-north-1", "--stdin", stdin=b"x\n", words=("not both",)
    ),
    "config get an unknown setting": bad(
        "config", "get", "colour", words=("unknown setting 'colour'",)
    ),
    "config unset an unknown setting": bad(
        "config", "unset", "colour", words=("unknown setting 'colour'",)
    ),
    "config show a malformed file": bad(
        "config", "show", config="[profiles\n", code=CONFIG, words=("not valid TOML",)
    ),
    "config get with profiles not tables": bad(
        "config",
        "get",
        "timeout",
        config="profiles = 3\n",
        code=CONFIG,
        words=("[profiles] must hold tables",),
    ),
    "config set into a file that is not UTF-8": bad(
        "config", "set", "timeout", "5", config=b"\xff\xfe", code=CONFIG, words=("cannot read",)
    ),
    # --- doctor ---
    # Doctor goes on past a config problem; without an API key it sends nothing.
    "doctor with an unknown profile": bad(
        "doctor",
        "--profile",
        "ghost",
        code=CONFIG,
        stdout=True,
        words=("2 problems; exit 3",),
        env={"VOLCCLI_API_KEY": None},
    ),
    "doctor --timeout 0": bad(
        "doctor", "--timeout", "0", stdout=True, words=("1 problem; exit 2",)
    ),
    "doctor with a malformed config": bad(
        "doctor",
        config="[profiles\n",
        code=CONFIG,
        stdout=True,
        words=("2 problems", "exit 3"),
        env={"VOLCCLI_API_KEY": None},
    ),
    "doctor unknown option": bad("doctor", "--fix", words=("No such option: --fix",)),
    # --- sandbox serve and completion ---
    "sandbox on a public address": bad(
        "sandbox", "serve", "--host", "0.0.0.0", words=("not a loopback address",)
    ),
    "sandbox latency not a number": bad(
        "sandbox", "serve", "--latency", "slow", words=("latency must be seconds",)
    ),
    "sandbox port out of range": bad(
        "sandbox", "serve", "--port", "70000", words=("--port 70000", "between 0 and 65535")
    ),
    "sandbox error rate above 1": bad(
        "sandbox", "serve", "--error-rate", "2", words=("--error-rate 2.0", "must be <= 1")
    ),
    "completion for an unknown shell": bad("completion", "tcsh", words=("'tcsh'",)),
    "unknown command": bad("paint", "x", words=("No such command 'paint'",)),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Path:
    """The inputs every row reads, plus two images made by volccli for inspect and rerun."""
    folder = tmp_path_factory.mktemp("catalogue")
    write_image(folder / "good.png", 96, 96)
    (folder / "notes.png").write_text("these are notes, not pixels\n")
    (folder / "adir").mkdir()
    (folder / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    (folder / "latin1.jsonl").write_bytes(b'{"command": "txt2img", "prompt": "caf\xe9"}\n')
    (folder / ONE_ROW).write_text('{"command": "txt2img", "prompt": "fine"}\n')
    (folder / "malformed.jsonl").write_text(
        '{"command": "txt2img", "prompt": "fine"}\n{"command": "txt2img", "prompt": \n'
    )
    (folder / "unknown.jsonl").write_text('{"command": "paint", "prompt": "x"}\n')
    (folder / "climb.jsonl").write_text(
        '{"command": "txt2img", "prompt": "x", "output_dir": "../elsewhere"}\n'
    )
    (folder / "absolute.jsonl").write_text(
        '{"command": "txt2img", "prompt": "x", "output_dir": "/tmp/volccli-abs"}\n'
    )
    (folder / "noimage.csv").write_text("command,image,prompt\nedit,nothere.png,recolour\n")
    (folder / "empty.jsonl").write_text("\n# nothing here\n")
    (folder / "broken.png").write_bytes((folder / "good.png").read_bytes())
    (folder / "broken.png.json").write_text("{not json")
    (folder / "foreign.png").write_bytes((folder / "good.png").read_bytes())
    (folder / "foreign.png.json").write_text('{"generator": "another tool", "body": {}}')
    env = {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": sandbox.base_url}
    made = folder / "made"
    write_image(folder / "input.png", 64, 64)
    for args in (
        ["txt2img", "a fox", "-o", made, "--name", "fox"],
        ["edit", folder / "input.png", "recolour", "-o", made, "--name", "changed"],
    ):
        result = run_cli([*args, "--no-log"], env=env)
        assert result.exit_code == 0, result.stderr
    write_image(folder / "input.png", 64, 64, colour=(1, 2, 3))  # the edit's input changes
    return folder


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(
    fresh_sandbox: Sandbox,
    workdir: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    row = CATALOGUE[name]
    monkeypatch.chdir(workdir)
    config_dir = Path(os.environ["VOLCCLI_CONFIG_DIR"])
    data_dir = Path(os.environ["VOLCCLI_DATA_DIR"])
    if row.config is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        text = row.config.encode() if isinstance(row.config, str) else row.config
        (config_dir / "config.toml").write_bytes(text)
    if row.history is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "history.db").write_bytes(row.history)
    before = snapshot(workdir), snapshot(isolated_env)
    env = {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": fresh_sandbox.base_url, **row.env}

    result = run_cli(list(row.args), input=row.stdin, env=env)

    assert result.exit_code == row.code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    line = lines[0]
    assert "Traceback" not in result.stderr
    assert not set(line) & set(PANEL_CHARS), line
    if not row.stdout:
        assert line.startswith("volccli: error: "), line
    if "--json" in row.args:  # the error again, as the one JSON object on stdout
        (record,) = result.json_lines()
        assert record["error"]["exit_code"] == row.code
    elif not row.stdout:
        assert result.stdout == ""
    for word in row.words:
        assert word in line, (word, line)
    for secret in ("hunter2", "QSECRET"):  # passwords and tokens in URLs are not echoed
        assert secret not in result.stdout + result.stderr or secret in row.words
    assert (
        snapshot(workdir),
        snapshot(isolated_env),
    ) == before  # not even a temp file or a journal
    assert not Path("/tmp/volccli-abs").exists()
    assert not (workdir.parent / "elsewhere").exists()
    assert api_requests(fresh_sandbox) == 0
    assert fresh_sandbox.stats()["billed"] == 0


def test_the_catalogue_covers_every_command() -> None:
    commands = {row.args[0] for row in CATALOGUE.values()}
    assert len(CATALOGUE) >= 40
    assert commands >= {
        "txt2img",
        "edit",
        "outpaint",
        "product-style",
        "controlnet",
        "call",
        "batch",
        "task",
        "inspect",
        "rerun",
        "history",
        "config",
        "doctor",
        "sandbox",
    }
