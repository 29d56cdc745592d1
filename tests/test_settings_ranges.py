"""Every setting's valid values, checked where the value is resolved.

A bad value from the config file or the environment exits 3 naming that source, the
valid range and the fix; `config set` refuses it (exit 2, naming key and value); the
same value as a flag exits 2 naming the flag; `doctor` lists every bad setting (exit 3).
Nothing is ever sent: each run points at the sandbox and counts what it received.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import Result, api_requests, listing, run_cli
from volccli.config import SETTINGS, BadValue, check, config_path, resolve
from volccli.errors import ExitCode, InputError
from volccli.sandbox import API_KEY, Sandbox

# (setting, the value as written in the TOML file, as typed in a shell, what is wrong)
BAD = [
    ("timeout", "0", "0", "must be above 0"),
    ("timeout", "'soon'", "soon", "must be a number above 0"),
    ("connect_timeout", "-1", "-1", "must be above 0"),
    ("retries", "-1", "-1", "must be at least 0"),
    ("retries", "1.5", "1.5", "must be a whole number of at least 0"),
    ("qps", "-0.5", "-0.5", "must be at least 0 (0 = no limit)"),
    ("jobs", "0", "0", "must be at least 1"),
    ("jobs", "257", "257", "must be at most 256"),
    ("max_image_bytes", "0", "0", "must be at least 1"),
    ("max_image_side", "-5", "-5", "must be at least 1"),
    ("max_aspect", "0.5", "0.5", "must be at least 1"),
    ("name", "'{bogus}'", "{bogus}", "has an unknown token {bogus}"),
    ("name", "'../up'", "../up", "climbs out of the output folder with '..'"),
    ("output_dir", "'-'", "-", "is stdout, not a folder"),
    ("auth", "'magic'", "magic", "is not one of gateway, official"),
    ("on_exists", "'maybe'", "maybe", "is not one of suffix, skip, overwrite, fail"),
]
IDS = [f"{key}={shell}" for key, _, shell, _ in BAD]


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"command": "txt2img", "prompt": "a red fox"}) + "\n")
    return path


def write_config(text: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    path.write_text(text)
    path.chmod(0o600)  # as `config set` writes it: doctor has no permissions to warn about
    return path


def batch(sandbox: Sandbox, rows: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    """A batch of one row that would be sent to ``sandbox`` if the settings allowed it."""
    args = ["batch", rows, "-o", rows.parent / "out", "--base-url", sandbox.base_url, *extra]
    return run_cli(args, env={"VOLCCLI_API_KEY": API_KEY, **(env or {})})


def refused(result: Result, code: ExitCode, sandbox: Sandbox, out: Path) -> str:
    """The one error line of a run that sent nothing and wrote nothing."""
    assert result.exit_code == code, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert api_requests(sandbox) == 0
    assert listing(out) == []
    return result.stderr_lines[0]


# --- the config file ----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "toml", "shell", "problem"), BAD, ids=IDS)
def test_a_bad_value_in_the_config_file_exits_3_naming_the_file(
    fresh_sandbox: Sandbox, rows: Path, key: str, toml: str, shell: str, problem: str
) -> None:
    path = write_config(f"[profiles.default]\n{key} = {toml}\n")
    line = refused(batch(fresh_sandbox, rows), ExitCode.CONFIG, fresh_sandbox, rows.parent / "out")
    where = f"{key} = {toml} in {path} [profiles.default]"
    assert line.startswith(f"volccli: error: {where}: {key} {problem}; "), line
    assert f"`volccli config unset {key}`" in line
    assert "--" + key.replace("_", "-") not in line.split(";")[0]  # no flag is blamed


def test_the_config_file_message_in_full(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    path = write_config("[profiles.default]\ntimeout = 0\n")
    args = ["txt2img", "x", "-o", tmp_path / "out", "--base-url", fresh_sandbox.base_url]
    result = run_cli(args, env={"VOLCCLI_API_KEY": API_KEY})
    assert refused(result, ExitCode.CONFIG, fresh_sandbox, tmp_path / "out") == (
        f"volccli: error: timeout = 0 in {path} [profiles.default]: timeout must be above 0; "
        "run `volccli config set timeout 120` or `volccli config unset timeout`"
    )


def test_a_named_profile_is_named_in_the_fix(fresh_sandbox: Sandbox, rows: Path) -> None:
    path = write_config("[profiles.default]\njobs = 2\n[profiles.work]\njobs = 0\n")
    result = batch(fresh_sandbox, rows, "--profile", "work")
    line = refused(result, ExitCode.CONFIG, fresh_sandbox, rows.parent / "out")
    assert f"jobs = 0 in {path} [profiles.work]: jobs must be at least 1" in line
    assert "`volccli config set --profile work jobs 4`" in line


def test_every_bad_setting_is_counted_in_the_one_line(fresh_sandbox: Sandbox, rows: Path) -> None:
    write_config("[profiles.default]\ntimeout = 0\njobs = 0\nname = '{bogus}'\n")
    line = refused(batch(fresh_sandbox, rows), ExitCode.CONFIG, fresh_sandbox, rows.parent / "out")
    assert "timeout must be above 0" in line
    assert line.endswith("(2 more bad settings: `volccli doctor` lists all)"), line


def test_good_values_in_the_config_file_are_used(fresh_sandbox: Sandbox, rows: Path) -> None:
    # The control for the tests above: the same run with valid settings sends its job.
    write_config("[profiles.default]\ntimeout = 30\njobs = 1\nqps = 0\nname = 'fox_{seed}'\n")
    result = batch(fresh_sandbox, rows)
    assert result.exit_code == 0, result.stderr
    assert api_requests(fresh_sandbox) == 1
    assert next(p for p in listing(rows.parent / "out") if p.endswith(".png")).startswith("fox_")


# --- the environment ----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "toml", "shell", "problem"), BAD, ids=IDS)
def test_a_bad_value_in_the_environment_exits_3_naming_the_variable(
    fresh_sandbox: Sandbox, rows: Path, key: str, toml: str, shell: str, problem: str
) -> None:
    variable = f"VOLCCLI_{key.upper()}"
    result = batch(fresh_sandbox, rows, env={variable: shell})
    line = refused(result, ExitCode.CONFIG, fresh_sandbox, rows.parent / "out")
    assert line.startswith(f"volccli: error: {variable}={shell}: {key} {problem}; "), line
    assert "unset" in line.split("; ", 1)[1]  # the fix


def test_the_environment_message_in_full(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    result = run_cli(
        ["--sandbox", "txt2img", "x", "-o", tmp_path / "out"], env={"VOLCCLI_TIMEOUT": "0"}
    )
    assert result.exit_code == ExitCode.CONFIG
    assert result.stderr_lines == [
        "volccli: error: VOLCCLI_TIMEOUT=0: timeout must be above 0; "
        "set VOLCCLI_TIMEOUT to e.g. 120, or unset it"
    ]
    assert listing(tmp_path / "out") == []


def test_the_environment_beats_a_bad_config_file(fresh_sandbox: Sandbox, rows: Path) -> None:
    # Only the value that wins is read: a bad one it hides is not an error.
    write_config("[profiles.default]\njobs = 0\n")
    result = batch(fresh_sandbox, rows, env={"VOLCCLI_JOBS": "2"})
    assert result.exit_code == 0, result.stderr
    assert api_requests(fresh_sandbox) == 1


# --- config set ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "toml", "shell", "problem"), BAD, ids=IDS)
def test_config_set_refuses_a_bad_value(
    fresh_sandbox: Sandbox, key: str, toml: str, shell: str, problem: str
) -> None:
    result = run_cli(["config", "set", key, "--", shell])
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    # the key, the value, and what would be valid
    line = result.stderr_lines[0]
    assert line.startswith(f"volccli: error: {key} = "), line
    given = line.removeprefix(f"volccli: error: {key} = ").split(f": {key} ")[0]
    assert shell in given and f": {key} {problem}" in line
    assert not config_path().exists()


def test_config_set_messages_in_full() -> None:
    assert run_cli(["config", "set", "jobs", "0"]).stderr_lines == [
        "volccli: error: jobs = 0: jobs must be at least 1; e.g. `volccli config set jobs 4`"
    ]
    name = run_cli(["config", "set", "name", "{bogus}"])
    assert name.exit_code == ExitCode.USAGE
    assert name.stderr_lines[0].startswith(
        "volccli: error: name = '{bogus}': name has an unknown token {bogus}; use one of {command}"
    )


def test_config_set_keeps_the_file_as_it_was() -> None:
    assert run_cli(["config", "set", "jobs", "3"]).exit_code == 0
    before = config_path().read_bytes()
    assert run_cli(["config", "set", "jobs", "0"]).exit_code == ExitCode.USAGE
    assert run_cli(["config", "set", "timeout", "0"]).exit_code == ExitCode.USAGE
    assert config_path().read_bytes() == before


def test_config_set_stores_good_values_typed() -> None:
    for key, value in (("timeout", "0.5"), ("qps", "0"), ("retries", "0"), ("jobs", "16")):
        assert run_cli(["config", "set", key, value]).exit_code == 0
    text = config_path().read_text()
    assert "timeout = 0.5" in text and "qps = 0.0" in text
    assert "retries = 0" in text and "jobs = 16" in text


# --- flags --------------------------------------------------------------------------------

FLAGS = [
    (["--timeout", "0"], "--timeout must be above 0, not 0"),
    (["--retries", "-1"], "--retries must be at least 0, not -1"),
    (["--auth", "magic"], "--auth 'magic' is not one of gateway, official"),
    (["-j", "0"], "--jobs must be at least 1, not 0"),
    (["--qps", "-1"], "--qps must be at least 0 (0 = no limit), not -1"),
    (["--max-aspect", "0.5"], "--max-aspect"),
    (["--name", "{bogus}"], "--name has an unknown token {bogus}"),
]


@pytest.mark.parametrize(("flag", "words"), FLAGS, ids=[" ".join(f) for f, _ in FLAGS])
def test_the_same_bad_value_as_a_flag_exits_2_naming_the_flag(
    fresh_sandbox: Sandbox, rows: Path, flag: list[str], words: str
) -> None:
    result = batch(fresh_sandbox, rows, *flag)
    line = refused(result, ExitCode.USAGE, fresh_sandbox, rows.parent / "out")
    assert line.startswith("volccli: error: ") and words in line, line
    assert "VOLCCLI_" not in line and "config.toml" not in line


def test_a_good_flag_overrides_a_bad_config_value(fresh_sandbox: Sandbox, rows: Path) -> None:
    write_config("[profiles.default]\ntimeout = 0\nretries = -1\n")
    result = batch(fresh_sandbox, rows, "--timeout", "30", "--retries", "1")
    assert result.exit_code == 0, result.stderr
    assert api_requests(fresh_sandbox) == 1


# --- doctor -------------------------------------------------------------------------------


def test_doctor_lists_every_bad_setting_and_goes_on(fresh_sandbox: Sandbox) -> None:
    path = write_config("[profiles.default]\ntimeout = 0\njobs = 0\nname = '/abs'\n")
    result = run_cli(
        ["doctor", "--base-url", fresh_sandbox.base_url], env={"VOLCCLI_API_KEY": API_KEY}
    )
    assert result.exit_code == ExitCode.CONFIG, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == [
        f"FAIL  setting timeout: timeout = 0 in {path} [profiles.default]: timeout must be "
        "above 0; fix: run `volccli config set timeout 120` or `volccli config unset timeout`",
        f"FAIL  setting jobs: jobs = 0 in {path} [profiles.default]: jobs must be at least 1; "
        "fix: run `volccli config set jobs 4` or `volccli config unset jobs`",
        f"FAIL  setting name: name = '/abs' in {path} [profiles.default]: name is an absolute "
        "path; fix: names are relative to --output-dir; set the folder with -o; or run "
        "`volccli config unset name`",
    ]
    # The other checks go on with the defaults: the credentials are not blamed, and pass.
    assert "ok    credentials: API key from env VOLCCLI_API_KEY" in result.stdout
    assert "ok    api key: the API key was accepted" in result.stdout
    assert result.stderr_lines[-1] == "volccli doctor: 3 problems; exit 3"
    assert fresh_sandbox.stats()["billed"] == 0


def test_doctor_json_names_the_variable(fresh_sandbox: Sandbox) -> None:
    result = run_cli(["--sandbox", "doctor", "--json"], env={"VOLCCLI_JOBS": "0"})
    assert result.exit_code == ExitCode.CONFIG
    (report,) = result.json_lines()
    assert report["exit_code"] == 3 and not report["ok"]
    (check_,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert check_["name"] == "setting jobs"
    assert check_["message"] == "VOLCCLI_JOBS=0: jobs must be at least 1"
    assert check_["fix"] == "set VOLCCLI_JOBS to e.g. 4, or unset it"


def test_doctor_with_a_bad_flag_is_still_a_usage_error(fresh_sandbox: Sandbox) -> None:
    result = run_cli(["doctor", "--base-url", fresh_sandbox.base_url, "--timeout", "0"])
    assert result.exit_code == ExitCode.USAGE
    assert "FAIL  config: --timeout must be above 0, not 0" in result.stdout
    assert api_requests(fresh_sandbox) == 0


# --- config show and get look at a bad value without failing ------------------------------


def test_config_show_and_get_warn_about_a_bad_value() -> None:
    path = write_config("[profiles.default]\njobs = 0\n")
    shown = run_cli(["config", "show", "--json"])
    assert shown.exit_code == 0, shown.stderr
    report = shown.json_lines()[0]
    assert report["settings"]["jobs"]["value"] == 0
    assert any(f"jobs = 0 in {path}" in note for note in report["notes"])
    got = run_cli(["config", "get", "jobs"])
    assert got.exit_code == 0 and got.stdout == "0\n"
    assert any("jobs must be at least 1" in line for line in got.stderr_lines)


# --- the table ----------------------------------------------------------------------------


def test_every_number_setting_has_bounds_and_every_default_is_valid() -> None:
    for setting in SETTINGS.values():
        if setting.type in (int, float):
            assert setting.bounds is not None, setting.name
        if setting.default is not None:
            assert check(setting, setting.default) == setting.default, setting.name


@pytest.mark.parametrize("raw", [True, [1], 1.5, "2.5", "nan", "inf", "-inf", ""])
def test_numbers_are_not_guessed(raw: object) -> None:
    with pytest.raises(BadValue):
        check(SETTINGS["jobs"], raw)
    if raw not in (1.5, "2.5"):
        with pytest.raises(BadValue):
            check(SETTINGS["timeout"], raw)


def test_bounds_are_inclusive_or_strict_as_declared() -> None:
    assert check(SETTINGS["retries"], "0") == 0
    assert check(SETTINGS["qps"], 0) == 0.0
    assert check(SETTINGS["jobs"], " 3 ") == 3
    assert check(SETTINGS["jobs"], 2.0) == 2
    assert math.isclose(check(SETTINGS["timeout"], "0.001"), 0.001)
    for key, raw in (("timeout", 0), ("connect_timeout", "0"), ("max_aspect", "0.99")):
        with pytest.raises(BadValue):
            check(SETTINGS[key], raw)


def test_pick_checks_a_flag_against_the_same_table() -> None:
    write_config("[profiles.default]\njobs = 2\n")
    resolved = resolve({})
    assert resolved.pick("jobs", None) == 2  # no flag: the resolved value
    assert resolved.pick("jobs", 8, "-j") == 8
    with pytest.raises(InputError) as info:
        resolved.pick("jobs", 0, "--jobs")
    assert info.value.message == "--jobs must be at least 1, not 0"
    assert info.value.hint == "e.g. --jobs 4"
    with pytest.raises(InputError) as info:
        resolved.pick("name", "{bogus}")
    assert info.value.message == "--name '{bogus}' has an unknown token {bogus}"
