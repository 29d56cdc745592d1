"""`volccli doctor` against the sandbox: what passes, and what each problem tells the user."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers_everyday import Run, free_port, invoke

from volccli import doctor
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, Sandbox

SECRETS = (API_KEY, SECRET_KEY, SESSION_TOKEN, "sandbox-secret-kex", "wrong-api-key")


def lines(run: Run) -> dict[str, str]:
    """Each check's line by its name ("signature", "clock", …)."""
    out: dict[str, str] = {}
    for line in run.out.splitlines():
        status, _, rest = line.partition("  ")
        name = rest.strip().split(":", 1)[0]
        assert status.strip() in ("ok", "warn", "FAIL"), line
        out[name] = line
    return out


def no_secrets(run: Run) -> None:
    for secret in SECRETS:
        assert secret not in run.out and secret not in run.err
    assert "Traceback" not in run.err


def official_env(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, secret: str) -> None:
    monkeypatch.setenv("VOLCCLI_ENDPOINT", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", secret)


def test_sandbox_passes_in_gateway_mode(capsys: pytest.CaptureFixture[str]) -> None:
    run = invoke(["--sandbox", "doctor"], capsys)
    assert run.code == 0, run.out + run.err
    checks = lines(run)
    assert all(line.startswith("ok") for line in checks.values()), run.out
    assert {"config", "auth", "credentials", "endpoint", "clock", "api key"} <= set(checks)
    assert "gateway" in checks["auth"]
    assert "not_found" in checks["api key"]
    no_secrets(run)


def test_sandbox_passes_in_official_mode_with_options_after_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = invoke(["doctor", "--sandbox", "--auth", "official"], capsys)
    assert run.code == 0, run.out + run.err
    checks = lines(run)
    assert "official" in checks["auth"] and "flag --auth" in checks["auth"]
    assert checks["signature"].startswith("ok")
    no_secrets(run)


def test_a_typo_in_the_secret_key_is_named_with_its_fix(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    official_env(monkeypatch, sandbox, "sandbox-secret-kex")
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    checks = lines(run)
    signature = checks["signature"]
    assert signature.startswith("FAIL")
    assert "signature does not match" in signature
    assert "check the secret key (from env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY)" in signature
    assert "clock" in signature
    # Everything before the signature was fine, and says where it came from.
    assert checks["credentials"].startswith("ok") and "env VOLCCLI_" in checks["credentials"]
    assert checks["endpoint"].startswith("ok") and checks["clock"].startswith("ok")
    no_secrets(run)

    official_env(monkeypatch, sandbox, SECRET_KEY)
    fixed = invoke(["doctor"], capsys)
    assert fixed.code == 0, fixed.out
    assert lines(fixed)["signature"].startswith("ok")
    no_secrets(fixed)


def test_an_unknown_access_key_is_named(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    official_env(monkeypatch, sandbox, SECRET_KEY)
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", "AKLTsomebodyElse")
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    signature = lines(run)["signature"]
    assert "InvalidAccessKey" in signature and "check the access key AKLT…Else" in signature


def test_an_sts_token_is_checked_too(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    official_env(monkeypatch, sandbox, SECRET_KEY)
    monkeypatch.setenv("VOLCCLI_SESSION_TOKEN", SESSION_TOKEN)
    good = invoke(["doctor"], capsys)
    assert good.code == 0, good.out
    assert "STS session token" in lines(good)["credentials"]
    no_secrets(good)
    monkeypatch.setenv("VOLCCLI_SESSION_TOKEN", "expired-token")
    bad = invoke(["doctor"], capsys)
    assert bad.code == 3
    assert "STS session token" in lines(bad)["signature"]
    assert "expired-token" not in bad.out + bad.err


def test_a_wrong_gateway_key_gets_the_relay_hint(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", "wrong-api-key")
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    line = lines(run)["api key"]
    assert line.startswith("FAIL") and "rejected the API key" in line
    assert "check the API key (from env VOLCCLI_API_KEY) and the base URL" in line
    no_secrets(run)


def test_an_unreachable_endpoint_exits_7(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("VOLCCLI_BASE_URL", url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(["doctor"], capsys)
    assert run.code == 7
    checks = lines(run)
    assert checks["endpoint"].startswith("FAIL")
    assert url in checks["endpoint"] and "connection refused" in checks["endpoint"]
    assert "fix: check the network" in checks["endpoint"]
    assert "api key" not in checks  # nothing more to learn without an endpoint
    no_secrets(run)


def test_a_malformed_config_file_is_one_line_and_the_sandbox_is_not_started(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated_env / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[profiles.default\nbase_url = 'x'\n")
    os.chmod(config.parent, 0o700)
    os.chmod(config, 0o600)
    run = invoke(["--sandbox", "doctor"], capsys)
    assert run.code == 3
    first, second = run.out.splitlines()
    assert first.startswith("FAIL  config:") and "is not valid TOML" in first and "fix:" in first
    # The sandbox comes with a session, which the broken file stops: said, not hidden.
    assert second.startswith("warn  sandbox: not started") and "fix:" in second
    assert run.err_lines == ["volccli doctor: 1 problem, 1 warning; exit 3"]
    no_secrets(run)


def test_an_unreadable_credentials_file_is_reported_with_its_fix(
    isolated_env: Path,
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = isolated_env / ".volc" / "credentials"
    credentials.parent.mkdir()
    credentials.write_bytes(b"[default]\naccess_key_id = \xff\xfe\n")
    monkeypatch.setenv("VOLCCLI_ENDPOINT", sandbox.base_url)
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    problems = [line for line in run.out.splitlines() if not line.startswith("ok")]
    assert any(str(credentials) in line and "cannot read" in line for line in problems)
    assert any(line.startswith("FAIL  credentials: no credentials") for line in problems)
    assert all("fix:" in line for line in problems)


def test_loose_config_permissions_are_a_warning(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated_env / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[profiles.default]\nbase_url = "https://relay.example.com"\n')
    os.chmod(config.parent, 0o700)
    os.chmod(config, 0o644)
    run = invoke(["--sandbox", "doctor"], capsys)
    assert run.code == 0  # a call can still be made
    warning = lines(run)["permissions"]
    assert warning.startswith("warn") and f"chmod 600 {config}" in warning


def test_json_lists_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    run = invoke(["--sandbox", "--auth", "official", "doctor", "--json"], capsys)
    assert run.code == 0
    report = json.loads(run.out)
    assert report["ok"] is True and report["exit_code"] == 0 and report["mode"] == "official"
    names = [check["name"] for check in report["checks"]]
    assert names == ["config", "auth", "credentials", "endpoint", "clock", "signature"]
    assert all(check["status"] == "ok" for check in report["checks"])
    assert isinstance(report["checks"][4]["skew_seconds"], float)


def test_json_reports_a_failure(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    official_env(monkeypatch, sandbox, "sandbox-secret-kex")
    run = invoke(["doctor", "--json"], capsys)
    assert run.code == 3
    report = json.loads(run.out)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["signature"]
    assert failed[0]["exit_code"] == 3 and "secret key" in failed[0]["fix"]
    no_secrets(run)


def test_probe_checks_each_request_kind(
    fresh_sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    official_env(monkeypatch, fresh_sandbox, SECRET_KEY)
    run = invoke(["doctor", "--probe"], capsys)
    assert run.code == 0, run.out
    checks = lines(run)
    probes = {name: line for name, line in checks.items() if name.startswith("probe ")}
    assert set(probes) == {
        "probe txt2img",
        "probe edit",
        "probe outpaint",
        "probe product-style",
        "probe controlnet",
    }
    assert all(line.startswith("ok") for line in probes.values())
    received = [entry["body"]["req_key"] for entry in fresh_sandbox.stats()["recent"]]
    assert received == [
        "high_aes_general_v14",  # the credentials check
        "high_aes_general_v14",
        "byteedit_v2.0",
        "i2i_outpainting",
        "img2img_e_commerce_style",
        "high_aes_scheduler_svr_controlnet_v2.0",
    ]
    assert fresh_sandbox.stats()["billed"] == 0


def test_probe_reports_50400_as_not_enabled(
    fresh_sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox answers 50400 to any request carrying this marker.
    monkeypatch.setattr(doctor, "DUMMY_TASK_ID", "1 volccli-fault:50400")
    official_env(monkeypatch, fresh_sandbox, SECRET_KEY)
    run = invoke(["doctor", "--probe"], capsys)
    checks = lines(run)
    assert checks["signature"].startswith("ok") and "50400" in checks["signature"]
    edit = checks["probe edit"]
    assert edit.startswith("warn")
    assert "byteedit_v2.0 is not enabled for this account" in edit and "fix: enable" in edit
    assert run.code == 0


def test_without_probe_only_one_call_is_made(
    fresh_sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    official_env(monkeypatch, fresh_sandbox, SECRET_KEY)
    assert invoke(["doctor"], capsys).code == 0
    assert fresh_sandbox.stats()["requests"] == {"CVSync2AsyncGetResult": {"ok": 1}}


def test_a_clock_far_off_fails_official_signing(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = doctor.utcnow
    monkeypatch.setattr(doctor, "utcnow", lambda: real() + timedelta(seconds=1200))
    official_env(monkeypatch, sandbox, SECRET_KEY)
    run = invoke(["doctor"], capsys)
    assert run.code == 3
    clock = lines(run)["clock"]
    assert clock.startswith("FAIL") and "ahead of the server's" in clock and "NTP" in clock


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
SERVER_DATE = "Sun, 01 Mar 2026 12:00:00 GMT"


@pytest.mark.parametrize(
    ("offset", "mode", "status"),
    [
        (0, "official", "ok"),
        (-60, "official", "ok"),
        (61, "official", "warn"),
        (-900, "official", "warn"),
        (901, "official", "fail"),
        (-3600, "official", "fail"),
        (3600, "gateway", "warn"),
    ],
)
def test_clock_thresholds(offset: int, mode: str, status: str) -> None:
    check = doctor.clock_check(SERVER_DATE, NOW + timedelta(seconds=offset), mode)
    assert check.status == status
    assert check.data["skew_seconds"] == offset
    direction = "matches" if offset == 0 else "behind" if offset < 0 else "ahead of"
    assert direction in check.message
    if status == "fail":
        assert check.exit_code == 3


@pytest.mark.parametrize("date", [None, "", "yesterday"])
def test_clock_without_a_usable_date_is_a_warning(date: str | None) -> None:
    check = doctor.clock_check(date, NOW, "official")
    assert check.status == "warn" and check.fix


def test_check_lines_are_single_lines() -> None:
    check = doctor.Check("x", "fail", "one\ntwo", "do\nthis", 3)
    assert check.line() == "FAIL  x: one two; fix: do this"
    assert doctor.Check("y", "ok", "fine", "unused").line() == "ok    y: fine"
