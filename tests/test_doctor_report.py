"""`volccli doctor` reports every problem, and says what is set but not used.

Each independent problem gets its own line with one fix, and the checks go on past it:
a bad setting with its default, bad credentials still with the endpoint and the clock.
A mode asked for without its credentials names the other mode's credentials that are
set; a session token apart from its key pair is named as not used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers_everyday import Run, free_port, invoke

from volccli import doctor
from volccli.config import Note, config_path, file_mode_problems, resolve
from volccli.connection import connect
from volccli.errors import ConfigError
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, Sandbox

# Fake secrets: none may appear in any output.
BROKEN_SECRET = "QASK_broken_secret_5e1"
TOKEN = "tok_unused_session_token_93b"
SECRETS = (API_KEY, SECRET_KEY, BROKEN_SECRET, TOKEN)


def checks(run: Run) -> list[tuple[str, str, str]]:
    """(status, name, the rest) of each line doctor printed."""
    out = []
    for line in run.out.splitlines():
        status, _, rest = line.partition("  ")
        name, _, text = rest.strip().partition(": ")
        out.append((status.strip(), name, text))
    return out


def named(run: Run, name: str) -> list[str]:
    return [f"{status} {text}" for status, each, text in checks(run) if each == name]


def clean(run: Run) -> None:
    for secret in SECRETS:
        assert secret not in run.out and secret not in run.err
    assert "Traceback" not in run.err


def write_config(text: str, *, folder_mode: int = 0o700) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path.parent, folder_mode)
    os.chmod(path, 0o600)
    return path


def profile_pair(access_key: str = ACCESS_KEY) -> Path:
    return write_config(
        f'[profiles.default]\naccess_key = "{access_key}"\nsecret_key = "{SECRET_KEY}"\n'
    )


# --- every problem, one line each, and the checks go on ---------------------------------


def test_a_bad_setting_a_broken_key_and_an_unreachable_endpoint_are_all_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("VOLCCLI_TIMEOUT", "0")
    monkeypatch.setenv("VOLCCLI_ENDPOINT", url)
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", "AKLTx")
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", f"{BROKEN_SECRET}\nx")
    run = invoke(["doctor"], capsys)
    failed = [(name, text) for status, name, text in checks(run) if status == "FAIL"]
    assert [name for name, _ in failed] == ["setting timeout", "credentials", "endpoint"]
    assert "VOLCCLI_TIMEOUT=0" in failed[0][1]
    assert "the secret key (from env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY)" in failed[1][1]
    assert "line break" in failed[1][1]
    assert url in failed[2][1] and "unreachable" in failed[2][1]
    assert all(text.count("; fix: ") == 1 for _, text in failed)
    # The configuration wins over the network, as the help says.
    assert run.code == 3
    assert run.err_lines == ["volccli doctor: 3 problems; exit 3"]
    clean(run)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("endpoint", '["http://127.0.0.1:9"]'), ("auth", '"magic"')],
)
def test_a_bad_url_or_mode_is_not_replaced_by_its_default_on_the_network(
    capsys: pytest.CaptureFixture[str], setting: str, value: str
) -> None:
    """Its default is a server nobody asked for (for the endpoint, the production one):
    the credentials are not sent there, and the network checks are skipped."""
    write_config(
        f'[profiles.default]\naccess_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n'
        f"{setting} = {value}\n"
    )
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    assert named(run, f"setting {setting}")[0].startswith("FAIL")
    (endpoint,) = named(run, "endpoint")
    assert endpoint.startswith(f"warn not checked: the {setting} setting is not valid")
    assert not [name for _, name, _ in checks(run) if name in ("clock", "signature", "api key")]
    clean(run)


def test_half_a_key_pair_still_gets_the_endpoint_and_the_clock_checked(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_ENDPOINT", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    run = invoke(["doctor", "--json"], capsys)
    assert run.code == 3
    report = json.loads(run.out)
    by_name = {check["name"]: check for check in report["checks"]}
    pair = by_name["key pair"]
    assert pair["status"] == "fail" and "secret_key is missing" in pair["message"]
    assert pair["fix"].startswith("export VOLCCLI_SECRET_KEY too")
    assert by_name["credentials"]["status"] == "fail"
    assert by_name["endpoint"]["status"] == "ok" and by_name["clock"]["status"] == "ok"
    assert report["problems"] == 2 and report["warnings"] == 0
    clean(run)


def test_a_bad_value_an_unknown_key_and_a_stray_table_in_the_config_file(
    fresh_sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config('stray = 1\n[profiles.default]\nretries = "x"\nretires = 2\n[other]\n')
    monkeypatch.setenv("VOLCCLI_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    (retries,) = named(run, "setting retries")
    assert retries.startswith("FAIL") and f"retries = 'x' in {path}" in retries
    sources = named(run, "sources")
    assert len(sources) == 3 and all(line.startswith("warn") for line in sources)
    # One fix per line, never two glued together.
    assert all(line.count("fix:") == 1 for line in sources)
    stray, other, unknown = sources
    assert "'stray' is outside [profiles.NAME]" in stray
    assert "fix: move it under [profiles.default]" in stray
    assert "'other' is outside" in other
    assert "unknown setting 'retires'" in unknown and "fix: rename it to 'retries'" in unknown
    # The checks went on with the default for retries, and the call was made.
    assert named(run, "api key")[0].startswith("ok")
    assert run.err_lines == ["volccli doctor: 1 problem, 3 warnings; exit 3"]
    assert fresh_sandbox.stats()["billed"] == 0
    clean(run)


def test_a_malformed_config_file_does_not_stop_the_other_checks(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config("[profiles.default\n")
    monkeypatch.setenv("VOLCCLI_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    (config,) = named(run, "config")
    assert config.startswith("FAIL") and "is not valid TOML" in config
    assert "the checks below do without it" in config and config.count("fix:") == 1
    assert named(run, "credentials")[0].startswith("ok")
    assert named(run, "api key")[0].startswith("ok")
    clean(run)


def test_an_unknown_profile_is_reported_and_the_environment_still_checked(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(["doctor", "--profile", "ghost"], capsys)
    assert run.code == 3
    (config,) = named(run, "config")
    assert config.startswith("FAIL") and "unknown profile 'ghost'" in config
    assert named(run, "api key")[0].startswith("ok")
    assert run.err_lines == ["volccli doctor: 1 problem; exit 3"]


def test_a_bad_option_value_is_still_a_usage_error_on_its_own_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = invoke(["doctor", "--timeout", "0"], capsys)
    assert run.code == 2
    assert [status for status, _, _ in checks(run)] == ["FAIL"]
    assert run.err_lines == ["volccli doctor: 1 problem; exit 2"]


def test_a_sandbox_that_cannot_start_is_one_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_SANDBOX_ERROR_RATE", "lots")
    run = invoke(["--sandbox", "doctor"], capsys)
    assert run.code == 3
    (line,) = named(run, "sandbox")
    assert line.startswith("FAIL") and "VOLCCLI_SANDBOX_ERROR_RATE" in line
    assert "credentials" not in [name for _, name, _ in checks(run)]


# --- the summary and the permission checks ------------------------------------------------


def report_of(*statuses: str, code: int = 3) -> doctor.Report:
    report = doctor.Report()
    for number, status in enumerate(statuses):
        failed = status == "fail"
        report.add(doctor.Check(f"c{number}", status, "x", exit_code=code if failed else 0))  # type: ignore[arg-type]  # the test's own statuses
    return report


@pytest.mark.parametrize(
    ("statuses", "summary"),
    [
        ((), "volccli doctor: ready"),
        (("ok", "warn"), "volccli doctor: ready, with 1 warning"),
        (("warn", "warn"), "volccli doctor: ready, with 2 warnings"),
        (("fail", "warn"), "volccli doctor: 1 problem, 1 warning; exit 3"),
        (("fail", "fail", "ok"), "volccli doctor: 2 problems; exit 3"),
        (("fail", "warn", "warn", "fail"), "volccli doctor: 2 problems, 2 warnings; exit 3"),
    ],
)
def test_the_summary_counts_problems_and_warnings_apart(
    statuses: tuple[str, ...], summary: str
) -> None:
    assert report_of(*statuses).summary() == summary


def test_configuration_wins_over_the_network_and_usage_over_both() -> None:
    report = doctor.Report()
    report.add(doctor.Check("endpoint", "fail", "x", exit_code=7))
    assert report.exit_code == 7
    report.add(doctor.Check("clock", "fail", "x", exit_code=3))
    assert report.exit_code == 3
    report.add(doctor.Check("flag", "fail", "x", exit_code=2))
    assert report.exit_code == 2


def test_a_loose_folder_and_a_wrong_key_are_one_problem_and_one_warning(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config("[profiles.default]\n", folder_mode=0o755)
    monkeypatch.setenv("VOLCCLI_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", "wrong-api-key")
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    assert named(run, "permissions")[0].startswith("warn")
    assert named(run, "api key")[0].startswith("FAIL")
    assert run.err_lines == ["volccli doctor: 1 problem, 1 warning; exit 3"]


def test_a_config_path_that_is_a_folder_gets_no_file_permission_check(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_path()
    path.mkdir(parents=True)
    os.chmod(path, 0o755)
    os.chmod(path.parent, 0o755)
    # The folder it lies in is still checked; the "file" is not one.
    assert file_mode_problems(path) == [
        f"{path.parent} is 0o755, readable by others; run chmod 700 {path.parent}"
    ]
    run = invoke(["--sandbox", "doctor"], capsys)
    (config,) = named(run, "config")
    assert config.startswith("FAIL") and "it is a folder" in config
    permissions = named(run, "permissions")
    assert len(permissions) == 1 and "chmod 600" not in permissions[0]


def test_a_missing_config_folder_has_no_permissions_to_check(tmp_path: Path) -> None:
    assert file_mode_problems(tmp_path / "absent" / "config.toml") == []


# --- a mode without its credentials, while the other mode's are set ---------------------


def test_official_mode_with_only_an_api_key_says_so(
    fresh_sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    url = fresh_sandbox.base_url
    run = invoke(["--auth", "official", "--endpoint", url, "txt2img", "x"], capsys)
    assert run.code == 3
    (line,) = run.err_lines
    assert "official mode (chosen by flag --auth) signs with an access key pair" in line
    assert "the API key that is set (from env VOLCCLI_API_KEY) is for gateway mode" in line
    assert "use --auth gateway to use that" in line
    assert "no gateway API key were found" not in line
    assert fresh_sandbox.stats()["requests"] == {}
    checked = invoke(["doctor", "--auth", "official", "--endpoint", url], capsys)
    assert checked.code == 3
    (credentials,) = named(checked, "credentials")
    assert credentials.startswith("FAIL") and "is for gateway mode" in credentials
    # Bad credentials: the endpoint and the clock are checked all the same.
    assert named(checked, "endpoint")[0].startswith("ok")
    assert named(checked, "clock")[0].startswith("ok")
    clean(run)
    clean(checked)


def test_gateway_mode_with_only_a_key_pair_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_AUTH", "gateway")
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", SECRET_KEY)
    run = invoke(["txt2img", "x"], capsys)
    assert run.code == 3
    (line,) = run.err_lines
    assert "gateway mode (chosen by env VOLCCLI_AUTH) needs a base URL and an API key" in line
    assert "the access key pair that is set (from env VOLCCLI_ACCESS_KEY/" in line
    assert "set VOLCCLI_AUTH=official to use that" in line
    assert "set VOLCCLI_BASE_URL and VOLCCLI_API_KEY" in line
    clean(run)


def test_the_switch_is_named_where_the_mode_was_chosen(isolated_env: Path) -> None:
    path = write_config('[profiles.work]\nauth = "gateway"\nbase_url = "http://127.0.0.1:9"\n')
    env = {
        "VOLCCLI_CONFIG_DIR": str(path.parent),
        "VOLCCLI_ACCESS_KEY": ACCESS_KEY,
        "VOLCCLI_SECRET_KEY": SECRET_KEY,
    }
    resolved = resolve({"profile": "work"}, env=env, home=isolated_env)
    with pytest.raises(ConfigError) as info:
        connect(resolved)
    assert info.value.message.startswith("gateway mode (chosen by profile 'work'")
    assert "needs an API key;" in info.value.message
    assert info.value.hint == (
        "run `volccli config set --profile work auth official` to use that, "
        "or set VOLCCLI_API_KEY (or `volccli config set api_key`)"
    )


# --- a session token apart from its key pair ------------------------------------------


def test_a_token_in_the_environment_with_a_pair_in_the_profile_is_named_as_unused(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = profile_pair()
    monkeypatch.setenv("VOLCCLI_ENDPOINT", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_SESSION_TOKEN", TOKEN)
    resolved = resolve({})
    assert resolved.get("session_token") is None  # still one source for the pair and token
    (unused,) = resolved.unused
    assert (unused.setting, unused.source) == ("session_token", "env VOLCCLI_SESSION_TOKEN")
    assert unused.note == Note(
        "the session token from env VOLCCLI_SESSION_TOKEN is not used: the access key pair "
        f"comes from profile 'default' ({path}), and a token is used only with its own pair",
        "put the token with that pair (`volccli config set session_token`), "
        "or unset VOLCCLI_SESSION_TOKEN",
    )
    warned: list[str] = []
    connection = connect(resolved, warn=warned.append)
    assert warned == [unused.note.text]
    assert "X-Security-Token" not in connection.auth.headers("POST", sandbox.base_url, "0" * 64)

    # The dry run sends no token, and doctor says why; the unsent token is never printed.
    dry = invoke(["txt2img", "x", "--dry-run"], capsys)
    assert dry.code == 0 and "X-Security-Token" not in dry.out
    assert dry.err_lines == [f"volccli: warning: {unused.note.text}"]
    run = invoke(["doctor"], capsys)
    assert run.code == 0
    (line,) = named(run, "session token")
    assert line.startswith("warn") and "env VOLCCLI_SESSION_TOKEN is not used" in line
    assert line.count("fix:") == 1
    assert named(run, "signature")[0].startswith("ok")
    assert run.err_lines == ["volccli doctor: ready, with 1 warning"]
    shown = invoke(["config", "show", "--json"], capsys)
    assert unused.note.text in json.loads(shown.out)["notes"]
    assert json.loads(shown.out)["not_used"] == {
        "session_token": {"value": "****", "source": "env VOLCCLI_SESSION_TOKEN"}
    }
    table = invoke(["config", "show"], capsys)
    (row,) = [line for line in table.out.splitlines() if "session_token" in line]
    assert row.split() == ["session_token", "****", "env", "VOLCCLI_SESSION_TOKEN", "(not", "used)"]
    for each in (dry, run, shown, table):
        clean(each)


def test_a_refused_access_key_does_not_blame_a_token_that_was_not_sent(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    profile_pair("AKLTsomebodyElse")
    monkeypatch.setenv("VOLCCLI_ENDPOINT", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_SESSION_TOKEN", TOKEN)
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    (signature,) = named(run, "signature")
    assert "InvalidAccessKey" in signature
    assert "and the STS session token" not in signature
    assert "no session token was sent (the session token from env VOLCCLI_SESSION_TOKEN" in (
        signature
    )
    clean(run)


def test_a_token_in_the_profile_with_a_pair_in_the_environment(isolated_env: Path) -> None:
    path = write_config('[profiles.default]\nsession_token = "t"\n')
    env = {
        "VOLCCLI_CONFIG_DIR": str(path.parent),
        "VOLCCLI_ACCESS_KEY": ACCESS_KEY,
        "VOLCCLI_SECRET_KEY": SECRET_KEY,
    }
    resolved = resolve({}, env=env, home=isolated_env)
    (unused,) = resolved.unused
    assert unused.source == f"session_token in profile 'default' ({path})"
    assert "the access key pair comes from env VOLCCLI_ACCESS_KEY/" in unused.note.message
    assert unused.note.fix == (
        "put the token with that pair (VOLCCLI_SESSION_TOKEN), "
        "or remove it with `volccli config unset session_token`"
    )


def test_a_token_without_any_pair_and_one_with_its_pair(isolated_env: Path) -> None:
    env = {"VOLCCLI_CONFIG_DIR": str(isolated_env / "none"), "VOLCCLI_SESSION_TOKEN": "t"}
    (unused,) = resolve({}, env=env, home=isolated_env).unused
    assert unused.note.message.endswith("there is no access key pair to go with it")
    paired = {**env, "VOLCCLI_ACCESS_KEY": "AK", "VOLCCLI_SECRET_KEY": "SK"}
    resolved = resolve({}, env=paired, home=isolated_env)
    assert resolved.unused == [] and resolved.get("session_token") == "t"


def test_an_unused_token_is_not_mentioned_in_gateway_mode_or_with_the_sandbox(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    profile_pair()
    monkeypatch.setenv("VOLCCLI_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("VOLCCLI_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    resolved = resolve({"auth": "gateway"})
    warned: list[str] = []
    connect(resolved, warn=warned.append)
    assert warned == []  # the pair is not used either
    for args in (["--auth", "gateway", "doctor"], ["--sandbox", "doctor"]):
        run = invoke(args, capsys)
        assert run.code == 0, run.out
        assert named(run, "session token") == []
        clean(run)
