"""Broken credential files and keys: one line naming the source, never a secret, never a
crash, nothing sent.

Covers the Volcengine tools' files (~/.volc/credentials, ~/.volc/config,
~/.volcengine/config.json) and config.toml when malformed or holding values of the wrong
type; keys with characters a request cannot carry (refused before anything is sent,
surrounding whitespace dropped); negative values for `config set`; `config get` of an
unset key; a config.toml that is not UTF-8; a bad `jobs` in config.toml for a batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import tomllib

from tests.helpers import Result, api_requests, run_cli
from volccli.cli.config_cmd import negatives_last
from volccli.config import (
    SETTINGS,
    BadValue,
    config_path,
    env_error,
    file_error,
    set_error,
    toml_problem,
)
from volccli.errors import ExitCode
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, Sandbox
from volccli.settings import unsendable

# A fake secret planted in broken files: it must appear in no output at all.
LEAK = "SKLEAK_fake_secret_7f3a"


def write(home: Path, relative: str, content: str | bytes) -> Path:
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    return path


def write_config(text: str) -> Path:
    """config.toml, 0600 in a 0700 folder (as `config set` writes it)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def clean(result: Result, *secrets: str) -> None:
    """No traceback, no 'unexpected error', and none of ``secrets`` anywhere."""
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text
        assert "unexpected error" not in text
        for secret in secrets:
            assert secret not in text, text


def official(sandbox: Sandbox) -> dict[str, str | None]:
    return {"VOLCCLI_ENDPOINT": sandbox.base_url, "VOLCCLI_AUTH": "official"}


# --- 1. parser messages never quote the file ---------------------------------------------

BROKEN_FILES = {
    "ini line without '='": (
        ".volc/credentials",
        f"[default]\naccess_key_id = AKLTx\nsecret_access_key {LEAK}\n",
        "line 3",
    ),
    "ini line before any section": (".volc/credentials", f"{LEAK}\n[default]\n", "line 1"),
    "ini name given twice": (
        ".volc/credentials",
        f"[default]\naccess_key_id = A\naccess_key_id = {LEAK}\n",
        "line 3",
    ),
    "ini not UTF-8": (
        ".volc/credentials",
        b"[default]\naccess_key_id = \xff" + LEAK.encode() + b"\n",
        "UTF-8",
    ),
    "volc config not JSON": (".volc/config", f'{{"ak": "AK", "sk": {LEAK}}}', "line 1"),
    "volcengine json not JSON": (
        ".volcengine/config.json",
        f'{{"current": "p",\n "profiles": {{"p": {{"secret-key": {LEAK}}}}}}}',
        "line 2",
    ),
    "volcengine json not UTF-8": (
        ".volcengine/config.json",
        b'{"current": "\xfe' + LEAK.encode() + b'"}',
        "UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_a_broken_credentials_file_is_one_line_without_its_content(
    case: str, isolated_env: Path, sandbox: Sandbox
) -> None:
    relative, content, where = BROKEN_FILES[case]
    path = write(isolated_env, relative, content)
    shown = run_cli(["config", "show"])
    assert shown.exit_code == 0, shown.stderr
    clean(shown, LEAK)
    warnings = [line for line in shown.stderr_lines if str(path) in line]
    assert len(warnings) == 1 and len(shown.stderr_lines) == 1, shown.stderr
    assert warnings[0].startswith("volccli: warning: ") and where in warnings[0]
    listing = run_cli(["config", "show", "--json"])
    clean(listing, LEAK)
    notes = json.loads(listing.stdout)["notes"]
    assert [note for note in notes if str(path) in note] == [warnings[0].split(": ", 2)[2]]
    for args in (["--sandbox", "doctor"], ["--sandbox", "doctor", "--json"]):
        doctor = run_cli(args)
        assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
        clean(doctor, LEAK)
        assert str(path) in doctor.stdout
    # Without another source, the refusal names the file it skipped; nothing is sent.
    before = api_requests(sandbox)
    refused = run_cli(["txt2img", "x", "-o", isolated_env / "out"], env=official(sandbox))
    assert refused.exit_code == ExitCode.CONFIG, refused.stderr
    assert len(refused.stderr_lines) == 1 and str(path) in refused.stderr
    clean(refused, LEAK)
    assert api_requests(sandbox) == before


BROKEN_TOML = {
    "an illegal character": f'[profiles.default]\napi_key = "{LEAK}\x01"\n',
    "a bare word": f"[profiles.default]\napi_key = {LEAK}\n",
    "a key without a value": f"[profiles.default]\n{LEAK}\n",
    "a key given twice": f"[profiles.default]\n{LEAK} = 1\n{LEAK} = 2\n",
    "an unterminated string": f'[profiles.default]\nsecret_key = "{LEAK}\n',
    "a bad escape": f'[profiles.default]\napi_key = "{LEAK}\\q"\n',
}


# doctor goes on to check the endpoint: a closed port on loopback, not the real API.
NO_REAL_ENDPOINT = {"VOLCCLI_ENDPOINT": "http://127.0.0.1:9"}


@pytest.mark.parametrize("case", list(BROKEN_TOML))
def test_invalid_toml_is_reported_by_position_only(case: str) -> None:
    text = BROKEN_TOML[case]
    with pytest.raises(tomllib.TOMLDecodeError) as info:
        tomllib.loads(text)
    problem = toml_problem(info.value)
    assert LEAK not in problem and "line" in problem
    path = write_config(text)
    for args in (["config", "show"], ["config", "get", "api_key"], ["--sandbox", "txt2img", "x"]):
        result = run_cli(args)
        assert result.exit_code == ExitCode.CONFIG, result.stderr
        assert result.stderr_lines == [result.stderr.strip()]
        assert f"{path} is not valid TOML (" in result.stderr and "line " in result.stderr
        clean(result, LEAK)
    doctor = run_cli(["doctor", "--json"], env=NO_REAL_ENDPOINT)
    assert doctor.exit_code == ExitCode.CONFIG
    clean(doctor, LEAK)


def test_secrets_of_the_wrong_type_in_config_toml_are_masked() -> None:
    path = write_config(
        f'[profiles.default]\napi_key = ["{LEAK}"]\nsecret_key = {{ v = "{LEAK}" }}\n'
        'access_key = "AK"\n'
    )
    shown = run_cli(["config", "show", "--json"])
    assert shown.exit_code == 0, shown.stderr
    clean(shown, LEAK)
    notes = json.loads(shown.stdout)["notes"]
    assert any(f"api_key = **** in {path}" in note and "must be text" in note for note in notes)
    assert any(f"secret_key = **** in {path}" in note for note in notes)
    # The fix for a secret never puts it on the command line.
    assert any("`volccli config set api_key` or" in note for note in notes)
    refused = run_cli(["--sandbox", "txt2img", "x"])
    assert refused.exit_code == ExitCode.CONFIG and len(refused.stderr_lines) == 1
    clean(refused, LEAK)
    doctor = run_cli(["doctor"], env=NO_REAL_ENDPOINT)
    assert doctor.exit_code == ExitCode.CONFIG
    assert "FAIL  setting api_key: api_key = ****" in doctor.stdout
    clean(doctor, LEAK)


def test_error_builders_mask_secret_settings() -> None:
    bad = BadValue("must be text")
    for name in ("api_key", "secret_key", "session_token"):
        setting = SETTINGS[name]
        for error in (
            env_error(setting, LEAK, bad),
            file_error(setting, [LEAK], bad, Path("/x/config.toml"), "default"),
            set_error(setting, [LEAK], bad),
        ):
            assert LEAK not in error.message + error.hint
            assert "****" in error.message
    # Settings that are not secrets still show the value, which is what helps.
    timeout = env_error(SETTINGS["timeout"], "soon", BadValue("must be a number"))
    assert "VOLCCLI_TIMEOUT=soon" in timeout.message


def test_percent_signs_in_an_ini_key_are_taken_as_written(isolated_env: Path) -> None:
    write(
        isolated_env,
        ".volc/credentials",
        f"[default]\naccess_key_id = AK%(x)s\nsecret_access_key = {LEAK}%\n",
    )
    shown = run_cli(["config", "show", "--json"])
    assert shown.exit_code == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["notes"] == []
    assert report["settings"]["secret_key"]["source"].startswith("file ")
    clean(shown, LEAK)


# --- 2. values of the wrong type are not credentials -------------------------------------

WRONG_SHAPES = {
    "volcengine json a list": (".volcengine/config.json", "[1]", "is a list, not a JSON object"),
    "volcengine json text": (".volcengine/config.json", '"x"', "is text, not a JSON object"),
    "volcengine json null": (".volcengine/config.json", "null", "is null, not a JSON object"),
    "volcengine profile text": (
        ".volcengine/config.json",
        '{"current": "p", "profiles": {"p": "str"}}',
        "profile 'p' is text, not an object",
    ),
    "volcengine profiles a list": (
        ".volcengine/config.json",
        '{"current": "p", "profiles": []}',
        '"profiles" is a list, not an object',
    ),
    "volcengine current a number": (
        ".volcengine/config.json",
        '{"current": 5, "profiles": {}}',
        '"current" is a number, not a profile name',
    ),
    "volcengine no current": (
        ".volcengine/config.json",
        '{"profiles": {"p": {}}}',
        "names no current profile",
    ),
    "volcengine unknown current": (
        ".volcengine/config.json",
        '{"current": "q", "profiles": {"p": {}}}',
        "has no profile 'q'",
    ),
    "volcengine key a number": (
        ".volcengine/config.json",
        '{"current": "p", "profiles": {"p": {"access-key": 5, "secret-key": "s"}}}',
        '"access-key" is a number, not text',
    ),
    "volcengine region a number": (
        ".volcengine/config.json",
        f'{{"current": "p", "profiles": {{"p": {{"access-key": "{ACCESS_KEY}", '
        f'"secret-key": "{SECRET_KEY}", "region": 5}}}}}}',
        '"region" is a number, not text',
    ),
    "volc config numbers": (".volc/config", '{"ak": 5, "sk": 6}', '"ak" is a number, not text'),
    "volc config a list": (".volc/config", "[1]", 'not a JSON object with "ak" and "sk"'),
    "volc config token a list": (
        ".volc/config",
        f'{{"ak": "{ACCESS_KEY}", "sk": "{SECRET_KEY}", "session_token": [1]}}',
        '"session_token" is a list, not text',
    ),
    "volc config no sk": (".volc/config", '{"ak": "AK"}', 'has no "ak" and "sk"'),
    "ini no default section": (".volc/credentials", "[other]\nx = 1\n", "no [default] section"),
}


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_a_credentials_file_of_the_wrong_shape_is_a_warning_and_ignored(
    case: str, isolated_env: Path, sandbox: Sandbox
) -> None:
    relative, content, words = WRONG_SHAPES[case]
    path = write(isolated_env, relative, content)
    out = isolated_env / "out"
    # Commands that do not use the file work as if it were not there.
    generated = run_cli(["--sandbox", "txt2img", "x", "-o", out])
    assert generated.exit_code == 0, generated.stderr
    gateway = {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": sandbox.base_url}
    assert run_cli(["txt2img", "x", "-o", out], env=gateway).exit_code == 0
    shown = run_cli(["config", "show"])
    assert shown.exit_code == 0, shown.stderr
    assert len(shown.stderr_lines) == 1
    assert shown.stderr_lines[0].startswith(f"volccli: warning: {path}")
    assert words in shown.stderr and "ignoring" in shown.stderr
    assert "access_key" not in shown.stdout  # the file gave no credentials
    doctor = run_cli(["doctor", "--json"], env=official(sandbox))
    assert doctor.exit_code == ExitCode.CONFIG
    checks = json.loads(doctor.stdout)["checks"]
    assert any(c["name"] == "sources" and words in c["message"] for c in checks)
    # A signed request has no credentials now: refused before anything is sent.
    before = api_requests(sandbox)
    refused = run_cli(["txt2img", "x", "-o", out], env=official(sandbox))
    assert refused.exit_code == ExitCode.CONFIG, refused.stderr
    assert len(refused.stderr_lines) == 1 and "no credentials" in refused.stderr
    assert words in refused.stderr
    assert api_requests(sandbox) == before
    for result in (generated, shown, doctor, refused):
        clean(result, SECRET_KEY)


# --- 3. keys a request cannot carry ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc", ""),
        ("with inner space", ""),
        ("ab\ncd", "a line break"),
        ("ab\rcd", "a line break"),
        ("ab\tcd", "a control character"),
        ("ab\x7fcd", "a control character"),
        ("长KEY", "a non-ASCII character"),
        ("café", "a non-ASCII character"),
    ],
)
def test_unsendable_names_the_kind_of_character(value: str, problem: str) -> None:
    assert unsendable(value) == problem


UNSENDABLE = {
    "api key not ASCII": (
        {"VOLCCLI_API_KEY": f"长{LEAK}"},
        "the API key (from env VOLCCLI_API_KEY) contains a non-ASCII character",
        "set VOLCCLI_API_KEY again",
    ),
    "api key with a line break": (
        {"VOLCCLI_API_KEY": f"{LEAK}\nmore"},
        "the API key (from env VOLCCLI_API_KEY) contains a line break, which an HTTP header",
        "set VOLCCLI_API_KEY again",
    ),
    "access key with a control character": (
        {"VOLCCLI_ACCESS_KEY": f"AK\x01{LEAK}", "VOLCCLI_SECRET_KEY": SECRET_KEY},
        "the access key (from env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY) contains a control",
        "set VOLCCLI_ACCESS_KEY again",
    ),
    "secret key with a line break": (
        {"VOLCCLI_ACCESS_KEY": ACCESS_KEY, "VOLCCLI_SECRET_KEY": f"{LEAK}\r\nx"},
        "the secret key (from env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY) contains a line break",
        "set VOLCCLI_SECRET_KEY again",
    ),
    "session token not ASCII": (
        {
            "VOLCCLI_ACCESS_KEY": ACCESS_KEY,
            "VOLCCLI_SECRET_KEY": SECRET_KEY,
            "VOLCCLI_SESSION_TOKEN": f"{LEAK}长",
        },
        "the STS session token (from env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY) contains",
        "set VOLCCLI_SESSION_TOKEN again",
    ),
    "volcengine secret key not ASCII": (
        {"VOLCENGINE_ACCESS_KEY": ACCESS_KEY, "VOLCENGINE_SECRET_KEY": f"{LEAK}é"},
        "the secret key (from env VOLCENGINE_ACCESS_KEY/VOLCENGINE_SECRET_KEY) contains a "
        "non-ASCII character, which a Volcengine key never has",
        "set VOLCENGINE_SECRET_KEY again",
    ),
    "region with a line break": (
        {
            "VOLCCLI_ACCESS_KEY": ACCESS_KEY,
            "VOLCCLI_SECRET_KEY": SECRET_KEY,
            "VOLCCLI_REGION": "cn-north-1\nx",
        },
        "the region (from env VOLCCLI_REGION) contains a line break",
        "cn-north-1",
    ),
}


@pytest.mark.parametrize("case", list(UNSENDABLE))
def test_a_key_a_header_cannot_carry_is_refused_before_anything_is_sent(
    case: str, isolated_env: Path, fresh_sandbox: Sandbox
) -> None:
    variables, message, fix = UNSENDABLE[case]
    env: dict[str, str | None] = {**variables, "VOLCCLI_BASE_URL": fresh_sandbox.base_url}
    env["VOLCCLI_ENDPOINT"] = fresh_sandbox.base_url
    out = isolated_env / "out"
    result = run_cli(["txt2img", "x", "-o", out], env=env)
    assert result.exit_code == ExitCode.CONFIG, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    line = result.stderr_lines[0]
    assert line.startswith(f"volccli: error: {message}") and fix in line, line
    clean(result, LEAK)
    assert api_requests(fresh_sandbox) == 0
    assert not out.exists() or list(out.iterdir()) == []  # no file, half-written or not
    doctor = run_cli(["doctor", "--json"], env=env)
    assert doctor.exit_code == ExitCode.CONFIG
    failed = [c for c in json.loads(doctor.stdout)["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["credentials"] and message in failed[0]["message"]
    clean(doctor, LEAK)
    assert api_requests(fresh_sandbox) == 0
    # The sandbox brings its own keys: the broken one is not used, so not refused.
    assert run_cli(["--sandbox", "txt2img", "x", "-o", out], env=env).exit_code == 0


def test_a_key_from_a_file_with_a_bad_character_names_the_file(
    isolated_env: Path, fresh_sandbox: Sandbox
) -> None:
    path = write(
        isolated_env,
        ".volc/credentials",
        f"[default]\naccess_key_id = AK长\nsecret_access_key = {LEAK}\n",
    )
    result = run_cli(["txt2img", "x"], env=official(fresh_sandbox))
    assert result.exit_code == ExitCode.CONFIG
    assert f"the access key (from file {path}) contains a non-ASCII character" in result.stderr
    assert "volccli config set access_key" in result.stderr
    clean(result, LEAK)
    assert api_requests(fresh_sandbox) == 0


def test_a_bad_region_flag_is_a_usage_error(fresh_sandbox: Sandbox) -> None:
    env = {**official(fresh_sandbox), "VOLCCLI_ACCESS_KEY": ACCESS_KEY}
    env["VOLCCLI_SECRET_KEY"] = SECRET_KEY
    result = run_cli(["--region", "cn-north\t1", "txt2img", "x"], env=env)
    assert result.exit_code == ExitCode.USAGE
    assert "the region (from flag --region) contains a control character" in result.stderr
    assert api_requests(fresh_sandbox) == 0


def test_whitespace_around_a_key_is_dropped_wherever_it_is_read(
    isolated_env: Path, fresh_sandbox: Sandbox
) -> None:
    out = isolated_env / "out"
    pasted = {"VOLCCLI_API_KEY": f" {API_KEY}\r\n", "VOLCCLI_BASE_URL": fresh_sandbox.base_url}
    assert run_cli(["txt2img", "a", "-o", out], env=pasted).exit_code == 0
    signed = {
        **official(fresh_sandbox),
        "VOLCCLI_ACCESS_KEY": f"{ACCESS_KEY}\n",
        "VOLCCLI_SECRET_KEY": f"{SECRET_KEY}\r\n",
        "VOLCCLI_SESSION_TOKEN": f"{SESSION_TOKEN} ",
        "VOLCCLI_REGION": "cn-north-1\n",
    }
    result = run_cli(["txt2img", "b", "-o", out], env=signed)
    assert result.exit_code == 0, result.stderr
    # TOML escapes: the values hold a real line break, tab and CR around the keys.
    write_config(
        f'[profiles.default]\naccess_key = "{ACCESS_KEY}\\n"\n'
        f'secret_key = "\\t{SECRET_KEY}\\r\\n"\n'
    )
    assert run_cli(["txt2img", "c", "-o", out], env=official(fresh_sandbox)).exit_code == 0
    config_path().unlink()
    write(
        isolated_env,
        ".volcengine/config.json",
        json.dumps(
            {
                "current": "p",
                "profiles": {
                    "p": {"access-key": f"{ACCESS_KEY}\n", "secret-key": f"{SECRET_KEY}\n"}
                },
            }
        ),
    )
    assert run_cli(["txt2img", "d", "-o", out], env=official(fresh_sandbox)).exit_code == 0
    assert api_requests(fresh_sandbox) == 4


def test_config_set_strips_a_pasted_key_and_refuses_one_a_header_cannot_carry() -> None:
    stored = run_cli(["config", "set", "api_key", "--stdin"], input=f"{LEAK}\r\n")
    assert stored.exit_code == 0, stored.stderr
    assert tomllib.loads(config_path().read_text())["profiles"]["default"]["api_key"] == LEAK
    before = config_path().read_bytes()
    for key, value, problem in (
        ("api_key", f"长{LEAK}\n", "a non-ASCII character, which an HTTP header cannot carry"),
        ("secret_key", f"{LEAK}\x01\n", "a control character, which a Volcengine key never has"),
        ("session_token", f"{LEAK}é\n", "a non-ASCII character"),
    ):
        refused = run_cli(["config", "set", key, "--stdin"], input=value)
        assert refused.exit_code == ExitCode.USAGE
        assert len(refused.stderr_lines) == 1
        assert refused.stderr.startswith(f"volccli: error: the value for {key} contains {problem}")
        clean(refused, LEAK)
    assert config_path().read_bytes() == before
    blank = run_cli(["config", "set", "secret_key", "--stdin"], input=" \r\n")
    assert blank.exit_code == ExitCode.USAGE and "empty value for secret_key" in blank.stderr
    region = run_cli(["config", "set", "region", "cn-north-1 \t"])
    assert region.exit_code == 0
    assert tomllib.loads(config_path().read_text())["profiles"]["default"]["region"] == "cn-north-1"


def test_a_placeholder_key_on_the_command_line_is_stored_and_refused_when_used(
    fresh_sandbox: Sandbox,
) -> None:
    # In plain view on the command line (README's `AKLT…`), the value is stored ...
    assert run_cli(["config", "set", "access_key", "AKLT…"]).exit_code == 0
    assert run_cli(["config", "set", "secret_key", "--stdin"], input=LEAK).exit_code == 0
    # ... and a command that would sign with it says which key and where it is.
    result = run_cli(["txt2img", "x"], env=official(fresh_sandbox))
    assert result.exit_code == ExitCode.CONFIG
    assert (
        f"the access key (from profile 'default' ({config_path()})) contains a non-ASCII"
        in result.stderr
    )
    assert "volccli config set access_key" in result.stderr
    clean(result, LEAK)
    assert api_requests(fresh_sandbox) == 0
    # A line break or a control character is refused even there.
    for value in ("AK\x01LT", "AK\nLT"):
        refused = run_cli(["config", "set", "access_key", value])
        assert refused.exit_code == ExitCode.USAGE and "the value for access_key" in refused.stderr
    assert "AKLT…" in config_path().read_text()


# --- 4. negative values for config set ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("timeout", "-1", "timeout must be above 0"),
        ("qps", "-0.5", "qps must be at least 0"),
        ("jobs", "-5", "jobs must be at least 1"),
        ("retries", "-1e3", "retries must be"),
        ("connect_timeout", "-inf", "connect_timeout must be"),
    ],
)
def test_config_set_takes_a_negative_value_and_says_what_is_valid(
    key: str, value: str, words: str
) -> None:
    result = run_cli(["config", "set", key, value])
    assert result.exit_code == ExitCode.USAGE
    assert len(result.stderr_lines) == 1 and words in result.stderr
    assert "No such option" not in result.stderr
    assert not config_path().exists()
    # With "--" it was always possible: the same answer.
    assert run_cli(["config", "set", key, "--", value]).stderr == result.stderr


def test_a_negative_looking_profile_name_stays_the_profile() -> None:
    result = run_cli(["config", "set", "--profile", "-1", "timeout", "5"])
    assert result.exit_code == 0, result.stderr
    assert tomllib.loads(config_path().read_text()) == {"profiles": {"-1": {"timeout": 5.0}}}
    misplaced = run_cli(["config", "set", "timeout", "5", "-v"])
    assert misplaced.exit_code == ExitCode.USAGE
    assert "put it before the command" in misplaced.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["timeout", "-1"], ["timeout", "--", "-1"]),
        (["-P", "-1", "timeout", "-2"], ["-P", "-1", "timeout", "--", "-2"]),
        (["timeout", "--", "-1"], ["timeout", "--", "-1"]),
        (["timeout", "-v"], ["timeout", "-v"]),
        (["timeout", "5"], ["timeout", "5"]),
        (["--stdin", "timeout"], ["--stdin", "timeout"]),
    ],
)
def test_negatives_last(args: list[str], expected: Sequence[str]) -> None:
    assert negatives_last(args) == expected


# --- 5. config get of an unset key -------------------------------------------------------


@pytest.mark.parametrize("key", ["secret_key", "api_key", "base_url", "session_token"])
def test_config_get_of_an_unset_key_exits_1_with_one_line(key: str) -> None:
    result = run_cli(["config", "get", key])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr_lines == [
        f"volccli: {key} is not set (profile 'default'); `volccli config set {key}` sets it"
    ]
    quiet = run_cli(["-q", "config", "get", key])
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (1, "", "")


def test_config_get_of_a_set_key_exits_0(isolated_env: Path) -> None:
    write(isolated_env, ".volc/config", json.dumps({"ak": ACCESS_KEY, "sk": LEAK}))
    result = run_cli(["config", "get", "secret_key"])
    assert (result.exit_code, result.stdout) == (0, "****\n")
    clean(result, LEAK)


# --- 6. a config file that is not UTF-8 --------------------------------------------------


def test_a_config_file_that_is_not_utf8_says_to_resave_it() -> None:
    path = config_path()
    path.parent.mkdir(parents=True, mode=0o700)
    before = b'[profiles.default]\napi_key = "'
    path.write_bytes(before + b"\xff" + LEAK.encode() + b'"\n')
    path.chmod(0o600)
    for args in (["config", "show"], ["config", "set", "timeout", "5"], ["--sandbox", "doctor"]):
        result = run_cli(args)
        assert result.exit_code == ExitCode.CONFIG
        text = result.stdout + result.stderr
        assert f"cannot read {path}: it is not UTF-8 text (byte {len(before)})" in text
        assert "re-save it as UTF-8" in text and "permissions" not in text
        clean(result, LEAK)


def test_a_byte_order_mark_is_not_an_error(isolated_env: Path) -> None:
    # Notepad starts a UTF-8 file with one; it is not part of the first line.
    write(
        isolated_env,
        ".volc/config",
        b"\xef\xbb\xbf" + json.dumps({"ak": "AK", "sk": LEAK}).encode(),
    )
    path = config_path()
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_bytes(b"\xef\xbb\xbf[profiles.default]\ntimeout = 7\n")
    path.chmod(0o600)
    shown = run_cli(["config", "show", "--json"])
    assert shown.exit_code == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["notes"] == []
    assert report["settings"]["timeout"]["value"] == 7.0
    assert report["settings"]["secret_key"]["source"] == f"file {isolated_env / '.volc' / 'config'}"


# --- 7. a bad jobs in config.toml for a batch --------------------------------------------


def test_a_bad_jobs_in_config_toml_exits_3_naming_the_file(
    tmp_path: Path, fresh_sandbox: Sandbox
) -> None:
    path = write_config("[profiles.default]\njobs = -5\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a"}\n')
    for extra in ([], ["-j", "2"]):
        result = run_cli(["--sandbox", "batch", rows, "-o", tmp_path / "out", *extra])
        assert result.exit_code == ExitCode.CONFIG, result.stderr
        assert len(result.stderr_lines) == 1
        assert f"jobs = -5 in {path} [profiles.default]: jobs must be at least 1" in result.stderr
        assert "--jobs" not in result.stderr
    assert not (tmp_path / "out").exists()
