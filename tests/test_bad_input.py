"""Bad input: one line on stderr naming the problem and the fix, the documented exit code,
no traceback, nothing sent to the sandbox and nothing written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    Result,
    api_requests,
    image_bytes,
    listing,
    noise_image,
    padded_png,
    png_header_only,
    run_cli,
    write_image,
)
from volccli.errors import ExitCode
from volccli.images import DEFAULT_MAX_BYTES
from volccli.sandbox import API_KEY, Sandbox


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every kind of bad (and one good) input, made once for the module."""
    folder = tmp_path_factory.mktemp("inputs")
    write_image(folder / "good.png", 100, 100)
    write_image(folder / "small_mask.png", 50, 50, colour=(255, 255, 255))
    (folder / "folder.png").mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("these are notes, not pixels\n")
    png = noise_image(64, 64)
    (folder / "cut.png").write_bytes(png[: len(png) - 40])
    jpeg = noise_image(64, 64, "JPEG")
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    gif = noise_image(64, 64, "GIF")
    (folder / "cut.gif").write_bytes(gif[: len(gif) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (folder / "big.png").write_bytes(padded_png(64, 64, DEFAULT_MAX_BYTES + 4096))
    write_image(folder / "huge.png", 4100, 1400)
    write_image(folder / "strip.png", 1000, 100)
    (folder / "anim.gif").write_bytes(image_bytes(40, 40, "GIF"))
    (folder / "list.json").write_text(json.dumps([1, 2]))
    (folder / "broken.json").write_text('{"prompt": ')
    (folder / "urls.json").write_text('{"image_urls": ["https://example.com/a.png"]}')
    (folder / "somefile.txt").write_text("not a folder")
    (folder / "jobs.jsonl").write_text('{"command": "txt2img", "prompt": "x"}\n')
    return folder


@pytest.fixture
def files(assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work among the inputs; results would go to ``out`` (a fresh folder per test)."""
    monkeypatch.chdir(assets)
    return assets


def check_refused(
    result: Result, code: ExitCode, words: list[str], folder: Path, before: list[str]
) -> None:
    """The refusal, and nothing new among the inputs or in the output folder."""
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    line = result.stderr_lines[0]
    assert line.startswith("volccli: error: ")
    for word in words:
        assert word in line, (word, line)
    assert result.stdout == ""
    assert listing(folder) == before  # nothing new, not even a temp file
    assert listing(Path("out")) == [] and listing(Path("somefile.txt")) == []


# --- the image commands -------------------------------------------------------------------

CASES: list[tuple[str, list[str], list[str]]] = [
    ("missing file", ["edit", "missing.png", "x"], ["IMAGE missing.png", "no such file"]),
    ("a folder", ["edit", "folder.png", "x"], ["IMAGE folder.png", "is a folder"]),
    ("empty file", ["edit", "empty.png", "x"], ["IMAGE empty.png", "is empty", "JPEG or PNG"]),
    ("text named .png", ["edit", "notes.png", "x"], ["IMAGE notes.png", "is text"]),
    ("truncated PNG", ["edit", "cut.png", "x"], ["IMAGE cut.png", "truncated"]),
    ("truncated JPEG", ["edit", "cut.jpg", "x"], ["IMAGE cut.jpg", "no JPEG end marker"]),
    ("truncated GIF", ["edit", "cut.gif", "x"], ["IMAGE cut.gif", "truncated or damaged"]),
    (
        "decompression bomb",
        ["edit", "bomb.png", "x"],
        ["IMAGE bomb.png", "too many to decode safely", "--max-image-side"],
    ),
    (
        "over the size limit",
        ["edit", "big.png", "x"],
        ["IMAGE big.png", "above the 4.7 MB limit", "--fit", "--max-image-bytes"],
    ),
    (
        "over the side limit",
        ["edit", "huge.png", "x"],
        ["IMAGE huge.png", "4100x1400", "4096px limit", "--max-image-side"],
    ),
    (
        "extreme aspect",
        ["edit", "strip.png", "x"],
        ["IMAGE strip.png", "1000x100", "3:1 limit", "--max-aspect"],
    ),
    (
        "mask size differs",
        ["outpaint", "good.png", "--mask", "small_mask.png"],
        ["--mask is 50x50", "canvas is 100x100"],
    ),
    (
        "unknown control type",
        ["controlnet", "x", "--control", "sketch:good.png"],
        ["--control type 'sketch' is unknown", "canny, depth, pose"],
    ),
    (
        "control strength 0",
        ["controlnet", "x", "--control", "canny:good.png:0"],
        ["--control strength 0", "(0, 1]"],
    ),
    (
        "control image missing",
        ["controlnet", "x", "--control", "depth:nowhere.png"],
        ["--control nowhere.png", "no such file"],
    ),
    (
        "control without image",
        ["controlnet", "x", "--control", "canny"],
        ["--control 'canny'", "TYPE:IMAGE[:STRENGTH]"],
    ),
    ("no control", ["controlnet", "x"], ["controlnet needs --control"]),
    (
        "unknown light position",
        ["product-style", "good.png", "--ref", "good.png", "--light-position", "Middle Light"],
        ["--light-position 'Middle Light'", "Top Left Light"],
    ),
    (
        "product weight 1.5",
        ["product-style", "good.png", "--ref", "good.png", "--product-weight", "1.5"],
        ["--product-weight 1.5", "[0, 1.3]"],
    ),
    (
        "auto scale 0",
        ["product-style", "good.png", "--ref", "good.png", "--auto-scale", "0"],
        ["--auto-scale 0", "(0, 1]"],
    ),
    (
        "mask switch without a mask",
        ["product-style", "good.png", "--ref", "good.png", "--mask-switch"],
        ["--mask-switch needs --mask"],
    ),
    (
        "light switch without a light map",
        ["product-style", "good.png", "--ref", "good.png", "--upload-light"],
        ["--upload-light needs --light-map"],
    ),
    ("no reference", ["product-style", "good.png"], ["product-style needs --ref"]),
    ("side ratio 0", ["outpaint", "good.png", "--top", "0"], ["--top 0", "(0, 1]"]),
    ("side ratio 1.5", ["outpaint", "good.png", "--left", "1.5"], ["--left 1.5", "(0, 1]"]),
    ("expand 0", ["outpaint", "good.png", "--expand", "0"], ["--expand 0", "(0, 1]"]),
    ("no extent", ["outpaint", "good.png", "sky"], ["outpaint needs an extent", "--expand"]),
    (
        "canvas and sides",
        ["outpaint", "good.png", "--mask", "good.png", "--top", "0.2"],
        ["--mask", "cannot be combined", "--top"],
    ),
    (
        "malformed aspect",
        ["outpaint", "good.png", "--aspect", "16-9"],
        ["--aspect '16-9' is not W:H", "16:9"],
    ),
    (
        "aspect beyond 1x",
        ["outpaint", "good.png", "--aspect", "4:1"],
        ["--aspect 4:1", "above the 1x limit"],
    ),
    (
        "file URL",
        ["edit", "file:///etc/hosts", "x"],
        ["IMAGE file:///etc/hosts", "file://", "http(s)"],
    ),
    ("ftp URL", ["edit", "ftp://example.com/a.png", "x"], ["IMAGE ftp://", "http(s)"]),
    (
        "malformed data URI",
        ["edit", "data:image/png,abc", "x"],
        ["IMAGE: malformed data: URI", "data:image/png;base64,"],
    ),
    (
        "bad base64 in data URI",
        ["edit", "data:image/png;base64,!!!", "x"],
        ["IMAGE: the data: URI's base64 is invalid"],
    ),
    (
        "--set malformed key",
        ["txt2img", "x", "--set", "bad key=1"],
        ["--set 'bad key=1' is not key=VALUE", "--set name=value"],
    ),
    (
        "--set Infinity",
        ["txt2img", "x", "--set", "scale=Infinity"],
        ["--set 'scale=Infinity'", "not JSON numbers"],
    ),
    (
        "NaN with --no-validate",
        ["txt2img", "x", "--scale", "nan", "--no-validate"],
        ["scale is not a finite number"],
    ),
    (
        "--set without value",
        ["edit", "good.png", "x", "--set", "scale"],
        ["--set 'scale' is not key=VALUE"],
    ),
    (
        "body not an object",
        ["call", "jimeng_i2i_v30", "--body", "list.json"],
        ["--body list.json: a list, not a JSON object"],
    ),
    (
        "body not JSON",
        ["call", "jimeng_i2i_v30", "--body", "broken.json"],
        ["--body broken.json: not JSON"],
    ),
    ("edit without anything", ["edit"], ["edit needs IMAGE"]),
    (
        "body with image URLs and --image",
        ["call", "jimeng_i2i_v30", "--body", "urls.json", "--image", "good.png"],
        ["--body already has image_urls, and the image options add images too"],
    ),
    (
        "body missing",
        ["call", "jimeng_i2i_v30", "--body", "nowhere.json"],
        ["--body", "nowhere.json", "No such file"],
    ),
    (
        "--no-convert GIF",
        ["edit", "anim.gif", "x", "--no-convert"],
        ["IMAGE anim.gif is GIF, not JPEG or PNG", "--no-convert"],
    ),
    ("edit scale 1.5", ["edit", "good.png", "x", "--scale", "1.5"], ["--scale 1.5", "[0, 1]"]),
    ("empty edit prompt", ["edit", "good.png", ""], ["PROMPT is empty"]),
    (
        "unknown watermark corner",
        ["edit", "good.png", "x", "--watermark-position", "centre"],
        ["--watermark-position 'centre'", "bottom-right"],
    ),
    (
        "opacity 2",
        ["txt2img", "x", "--watermark-opacity", "2"],
        ["--watermark-opacity 2", "[0, 1]"],
    ),
    ("bad --name", ["txt2img", "x", "--name", "../{seed}"], ["--name", "'..'"]),
    (
        "unknown --name token",
        ["txt2img", "x", "--name", "{colour}"],
        ["--name has an unknown token {colour}"],
    ),
    (
        "bad --on-exists",
        ["txt2img", "x", "--on-exists", "replace"],
        ["--on-exists 'replace'", "suffix, skip, overwrite or fail"],
    ),
    ("-o - with -n 2", ["txt2img", "x", "-o", "-", "-n", "2"], ["-o -", "-n"]),
    ("-n 0", ["txt2img", "x", "-n", "0"], ["-n/--count 0 must be at least 1"]),
    (
        "bad --on-filtered",
        ["txt2img", "x", "--on-filtered", "reseed"],
        ["--on-filtered 'reseed'", "reseed:3"],
    ),
]


@pytest.mark.parametrize(("args", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_image_command_bad_input(
    fresh_sandbox: Sandbox, files: Path, args: list[str], words: list[str]
) -> None:
    before = listing(files)
    result = run_cli(
        [*args, "-o", "out", "--base-url", fresh_sandbox.base_url]
        if "-o" not in args
        else [*args, "--base-url", fresh_sandbox.base_url],
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    check_refused(result, ExitCode.USAGE, words, files, before)
    assert api_requests(fresh_sandbox) == 0
    assert fresh_sandbox.stats()["billed"] == 0


def test_stdin_can_feed_only_one_argument(fresh_sandbox: Sandbox, files: Path) -> None:
    before = listing(files)
    result = run_cli(
        ["edit", "-", "-", "-o", "out", "--base-url", fresh_sandbox.base_url],
        input="a prompt from stdin",
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    check_refused(
        result, ExitCode.USAGE, ["PROMPT and IMAGE both ask to read stdin"], files, before
    )
    result = run_cli(
        ["controlnet", "-", "--control", "pose:-:0.5", "--base-url", fresh_sandbox.base_url],
        input="a prompt from stdin",
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    check_refused(
        result, ExitCode.USAGE, ["PROMPT and --control both ask to read stdin"], files, before
    )
    assert api_requests(fresh_sandbox) == 0


def test_empty_stdin_image(fresh_sandbox: Sandbox, files: Path) -> None:
    before = listing(files)
    result = run_cli(
        ["edit", "-", "x", "-o", "out", "--base-url", fresh_sandbox.base_url],
        input=b"",
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    check_refused(result, ExitCode.USAGE, ["IMAGE -: stdin is empty"], files, before)


# --- the core -----------------------------------------------------------------------------

Setup = Callable[[Sandbox], tuple[list[str], dict[str, str | None]]]


def _gateway(extra: list[str]) -> Setup:
    return lambda sb: ([*extra, "--base-url", sb.base_url], {"VOLCCLI_API_KEY": API_KEY})


CORE_CASES: list[tuple[str, Setup, ExitCode, list[str]]] = [
    (
        "no credentials",
        lambda sb: (["txt2img", "x", "-o", "out"], {}),
        ExitCode.CONFIG,
        ["no credentials", "VOLCCLI_ACCESS_KEY", "volccli config set"],
    ),
    (
        "no credentials for a batch",
        lambda sb: (["batch", "jobs.jsonl", "-o", "out"], {}),
        ExitCode.CONFIG,
        ["no credentials", "volccli config set"],
    ),
    (
        "no credentials to fetch a task",
        lambda sb: (["task", "wait", "high_aes_general_v14", "7", "-o", "out"], {}),
        ExitCode.CONFIG,
        ["no credentials", "volccli config set"],
    ),
    (
        "no API key for the gateway",
        lambda sb: (["txt2img", "x", "-o", "out", "--base-url", sb.base_url], {}),
        ExitCode.CONFIG,
        ["no API key", "VOLCCLI_API_KEY", "volccli config set api_key"],
    ),
    (
        "an API key but no base URL",
        lambda sb: (["txt2img", "x"], {"VOLCCLI_API_KEY": API_KEY}),
        ExitCode.CONFIG,
        ["gateway mode needs a base URL", "VOLCCLI_BASE_URL", "volccli config set base_url"],
    ),
    (
        "unknown profile",
        _gateway(["txt2img", "x", "--profile", "nope"]),
        ExitCode.CONFIG,
        ["unknown profile 'nope'", "volccli config set --profile nope"],
    ),
    (
        "unknown profile from env",
        lambda sb: (
            ["txt2img", "x", "--base-url", sb.base_url],
            {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_PROFILE": "ghost"},
        ),
        ExitCode.CONFIG,
        ["unknown profile 'ghost'", "env VOLCCLI_PROFILE"],
    ),
    (
        "malformed base URL",
        lambda sb: (["txt2img", "x", "--base-url", "not a url"], {"VOLCCLI_API_KEY": API_KEY}),
        ExitCode.USAGE,
        ["base_url 'not a url'", "flag --base-url", "https://host"],
    ),
    (
        "base URL with another scheme",
        lambda sb: (
            ["txt2img", "x", "--base-url", "ftp://relay.example"],
            {"VOLCCLI_API_KEY": API_KEY},
        ),
        ExitCode.USAGE,
        ["'ftp://relay.example'", "not an http(s) URL"],
    ),
    (
        "malformed base URL from env",
        lambda sb: (
            ["txt2img", "x"],
            {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": "relay.example"},
        ),
        ExitCode.CONFIG,
        ["'relay.example'", "env VOLCCLI_BASE_URL"],
    ),
    (
        "width outside its range",
        _gateway(["txt2img", "x", "--width", "1000"]),
        ExitCode.USAGE,
        ["--width 1000 is outside [256, 768]", "--no-validate"],
    ),
    (
        "height below its range",
        _gateway(["txt2img", "x", "-H", "100"]),
        ExitCode.USAGE,
        ["--height 100 is outside [256, 768]"],
    ),
    (
        "non-numeric seed",
        _gateway(["txt2img", "x", "--seed", "abc"]),
        ExitCode.USAGE,
        # The wording after the option name is Typer's own: "valid integer" or, in
        # Typer 0.27 and 0.28, "valid int".
        ["'--seed'", "valid int", "volccli txt2img --help"],
    ),
    (
        "seed below -1",
        _gateway(["txt2img", "x", "--seed", "-2"]),
        ExitCode.USAGE,
        ["--seed -2 is outside [-1, 2147483647]"],
    ),
    ("empty prompt", _gateway(["txt2img", ""]), ExitCode.USAGE, ["PROMPT is empty"]),
    ("blank prompt", _gateway(["txt2img", "   "]), ExitCode.USAGE, ["PROMPT is empty"]),
    (
        "missing prompt file",
        _gateway(["txt2img", "@nowhere.txt"]),
        ExitCode.USAGE,
        ["PROMPT @nowhere.txt", "cannot read"],
    ),
    (
        "unknown option",
        _gateway(["txt2img", "x", "--colour", "red"]),
        ExitCode.USAGE,
        ["No such option: --colour"],
    ),
    (
        "negative timeout",
        _gateway(["txt2img", "x", "--timeout", "-1"]),
        ExitCode.USAGE,
        ["--timeout must be above 0"],
    ),
    (
        "-n images whose names a length spec makes equal",
        _gateway(
            [
                "txt2img",
                "x",
                "-n",
                "3",
                "--seed",
                "10",
                "--name",
                "s{seed:1}",
                "--on-exists",
                "overwrite",
            ]
        ),
        ExitCode.USAGE,
        ["gives images 1 and 2 the same name s1.png", "--on-exists suffix"],
    ),
    (
        "-n images whose names the length cut makes equal",
        _gateway(
            ["txt2img", "x", "-n", "2", "--name", "a" * 250 + "_{seed}", "--on-exists", "fail"]
        ),
        ExitCode.USAGE,
        ["gives images 1 and 2 the same name", "keep {seed} or {index} whole"],
    ),
    (
        "a --name subfolder under a file",
        _gateway(["txt2img", "x", "-o", ".", "--name", "somefile.txt/x_{seed}"]),
        ExitCode.OUTPUT,
        ["somefile.txt is a file, not a folder"],
    ),
    (
        "output folder under a file",
        _gateway(["txt2img", "x", "-o", "somefile.txt/sub"]),
        ExitCode.OUTPUT,
        ["cannot write to somefile.txt/sub", "--output-dir"],
    ),
]


@pytest.mark.parametrize(
    ("setup", "code", "words"), [c[1:] for c in CORE_CASES], ids=[c[0] for c in CORE_CASES]
)
def test_core_bad_input(
    fresh_sandbox: Sandbox, files: Path, setup: Setup, code: ExitCode, words: list[str]
) -> None:
    args, env = setup(fresh_sandbox)
    if "-o" not in args:
        args = [*args, "-o", "out"]
    before = listing(files)
    result = run_cli(args, env=env)
    check_refused(result, code, words, files, before)
    assert api_requests(fresh_sandbox) == 0


@pytest.mark.parametrize(
    "args", [["txt2img", "x"], ["batch", "jobs.jsonl"]], ids=["txt2img", "batch"]
)
def test_json_with_nul_separated_paths_is_refused(
    fresh_sandbox: Sandbox, files: Path, args: list[str]
) -> None:
    before = listing(files)
    result = run_cli(
        [*args, "--json", "-0", "-o", "out", "--base-url", fresh_sandbox.base_url],
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr_lines == [
        "volccli: error: --json and -0/--null cannot be combined; "
        "--json prints one JSON record per line; drop one of them"
    ]
    assert json.loads(result.stdout)["error"]["exit_code"] == ExitCode.USAGE
    assert listing(files) == before and api_requests(fresh_sandbox) == 0


@pytest.mark.parametrize(
    "args",
    [["edit", "lat\udce9.png", "x"], ["txt2img", "x", "-o", "d\udce9"]],
    ids=["input file", "output folder"],
)
def test_an_argument_that_is_not_utf8_is_refused_before_sending(
    fresh_sandbox: Sandbox, files: Path, args: list[str]
) -> None:
    """Bytes that are not UTF-8 on the command line (Python keeps them as surrogates)."""
    before = listing(files)
    if args[0] == "edit":
        (files / os.fsdecode(b"lat\xe9.png")).write_bytes((files / "good.png").read_bytes())
        before = listing(files)
    result = run_cli(
        [*args, "--base-url", fresh_sandbox.base_url], env={"VOLCCLI_API_KEY": API_KEY}
    )
    assert result.exit_code == ExitCode.USAGE
    assert len(result.stderr_lines) == 1
    line = result.stderr_lines[0]
    assert "is not valid UTF-8" in line and "\\xe9" in line and "rename the file" in line
    assert listing(files) == before and api_requests(fresh_sandbox) == 0


@pytest.mark.parametrize(
    ("in_the_way", "words"),
    [
        ("fixed.png.json", ["fixed.png.json is not a volccli recipe", "--no-sidecar"]),
        ("fixed.png.json/", ["fixed.png.json is a folder", "--on-exists suffix"]),
        ("fixed.png/", ["fixed.png is a folder", "choose another --name"]),
    ],
)
def test_overwrite_replaces_only_images_and_recipes(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_the_way: str,
    words: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    kept = tmp_path / "kept"
    kept.mkdir()
    if in_the_way.endswith("/"):
        (kept / in_the_way).mkdir()
    else:
        (kept / in_the_way).write_text("my notes")
    before = listing(tmp_path)
    result = run_cli(
        [
            "txt2img",
            "x",
            "--name",
            "fixed",
            "--on-exists",
            "overwrite",
            "-o",
            "kept",
            "--base-url",
            fresh_sandbox.base_url,
        ],
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    check_refused(result, ExitCode.OUTPUT, words, tmp_path, before)
    assert api_requests(fresh_sandbox) == 0  # refused before anything was paid for
    if not in_the_way.endswith("/"):
        assert (kept / in_the_way).read_text() == "my notes"


def test_an_existing_file_with_on_exists_fail(
    fresh_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "fixed.png").write_bytes(b"my precious file")
    before = listing(tmp_path)
    result = run_cli(
        [
            "txt2img",
            "x",
            "--seed",
            "7",
            "--name",
            "fixed",
            "--on-exists",
            "fail",
            "-o",
            "kept",
            "--base-url",
            fresh_sandbox.base_url,
        ],
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    check_refused(
        result, ExitCode.OUTPUT, ["fixed.png already exists", "--on-exists"], tmp_path, before
    )
    assert (tmp_path / "kept" / "fixed.png").read_bytes() == b"my precious file"
    assert api_requests(fresh_sandbox) == 0  # decided before anything was paid for
