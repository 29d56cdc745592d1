"""--print-curl: the printed command, pasted into a shell, makes the same request and succeeds."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers_everyday import Run, invoke, write_image

from volccli.auth import BearerAuth, V4Auth
from volccli.connection import Connection
from volccli.curl import curl_command
from volccli.payload import EncodedBody, encode_body
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, Sandbox

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(autouse=True)
def body_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Body files land in the test's folder instead of the system's temp folder."""
    folder = tmp_path / "bodies"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def body_files(text: str) -> list[Path]:
    return [Path(name) for name in re.findall(r"--data-binary @(\S+)", text)]


def shell(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Paste the printed text into bash, as a user would, with only ``env`` of ours set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOLCCLI_", "VOLC"))}
    return subprocess.run(
        ["bash", "-c", command],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_printed(command: str, env: dict[str, str], cwd: Path) -> dict[str, object]:
    done = shell(command, env, cwd)
    assert done.returncode == 0, done.stderr + done.stdout[:500]
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def print_curl(
    args: list[object], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Run:
    run = invoke([*args, "--print-curl"], capsys)
    assert run.code == 0, run.err
    for secret in (API_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret not in run.out and secret not in run.err
    return run


def last_request(sandbox: Sandbox) -> dict[str, object]:
    recent = sandbox.stats()["recent"]
    assert recent, "the sandbox saw no request"
    entry: dict[str, object] = recent[-1]
    return entry


@needs_curl
def test_gateway_command_succeeds_with_the_key_from_the_environment(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    write_image(tmp_path / "photo.jpg", 640, 480)
    monkeypatch.chdir(tmp_path)
    run = print_curl(["edit", "photo.jpg", "make the jacket red"], capsys, monkeypatch)
    assert '"Authorization: Bearer $VOLCCLI_API_KEY"' in run.out
    assert fresh_sandbox.stats()["requests"] == {}  # printing sends nothing
    answer = run_printed(run.out, {"VOLCCLI_API_KEY": API_KEY}, tmp_path)
    assert answer["code"] == 10000
    request = last_request(fresh_sandbox)
    assert request["status"] == 200 and request["style"] == "gateway"
    assert request["req_key"] == "byteedit_v2.0"
    # Without the variable the relay refuses it: the key really comes from the environment.
    refused = shell(run.out, {}, tmp_path)
    assert refused.returncode == 22 and "invalid token" in refused.stdout  # --fail-with-body


@needs_curl
def test_official_command_is_signed_and_succeeds(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_ENDPOINT", fresh_sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", SECRET_KEY)
    write_image(tmp_path / "pose.png", 512, 512)
    monkeypatch.chdir(tmp_path)
    run = print_curl(
        ["controlnet", "a robot dancing 机器人", "--control", "pose:pose.png:0.8", "-n", "2"],
        capsys,
        monkeypatch,
    )
    commands = run.out.strip().split("\n\n")
    assert len(commands) == 2
    for text in commands:
        assert re.search(r"# signed at \S+Z, valid until about \S+Z", text)
        assert "X-Date: " in text and "X-Content-Sha256: " in text
        assert "Authorization: HMAC-SHA256 Credential=AKLTsandboxAccessKey/" in text
        answer = run_printed(text, {}, tmp_path)
        assert answer["code"] == 10000
        request = last_request(fresh_sandbox)
        assert request["status"] == 200 and request["style"] == "official"
    seeds = [entry["body"]["seed"] for entry in fresh_sandbox.stats()["recent"]]
    assert len(set(seeds)) == 2  # each printed command is its own job


@needs_curl
def test_an_sts_token_is_a_variable_and_is_signed(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_ENDPOINT", fresh_sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("VOLCCLI_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.chdir(tmp_path)
    run = print_curl(["txt2img", "a red bicycle"], capsys, monkeypatch)
    assert '"X-Security-Token: $VOLCCLI_SESSION_TOKEN"' in run.out
    assert "x-security-token" in run.out  # among the signed headers
    assert "needs VOLCCLI_SESSION_TOKEN" in run.out
    answer = run_printed(run.out, {"VOLCCLI_SESSION_TOKEN": SESSION_TOKEN}, tmp_path)
    assert answer["code"] == 10000


@needs_curl
def test_async_prints_the_submit_call(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = print_curl(["txt2img", "a cat", "--async"], capsys, monkeypatch)
    assert "Action=CVSync2AsyncSubmitTask" in run.out
    answer = run_printed(run.out, {"VOLCCLI_API_KEY": API_KEY}, tmp_path)
    data = answer["data"]
    assert isinstance(data, dict) and data["task_id"]


def test_the_body_file_holds_the_exact_bytes_privately(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", SECRET_KEY)
    write_image(tmp_path / "photo.png", 300, 200)
    monkeypatch.chdir(tmp_path)
    run = print_curl(["edit", "photo.png", "雪景", "--seed", "7"], capsys, monkeypatch)
    (path,) = body_files(run.out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sha = re.search(r"X-Content-Sha256: ([0-9a-f]{64})", run.out)
    assert sha is not None
    import hashlib

    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha.group(1)
    body = json.loads(data)
    assert body["prompt"] == "雪景" and body["seed"] == 7
    assert len(body["binary_data_base64"][0]) > 100  # the whole image, not a preview
    assert f"({len(data)} bytes, sha256 {sha.group(1)}, mode 0600)" in run.out


def test_json_describes_each_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("VOLCCLI_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("VOLCCLI_SECRET_KEY", SECRET_KEY)
    run = print_curl(["txt2img", "a cat", "-n", "2", "--json"], capsys, monkeypatch)
    records = [json.loads(line) for line in run.out.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["curl"].startswith("curl ")
        assert Path(record["body_file"]).is_file()
        signed = datetime.strptime(record["signed_at"], "%Y-%m-%dT%H:%M:%SZ")
        until = datetime.strptime(record["valid_until"], "%Y-%m-%dT%H:%M:%SZ")
        assert until - signed == timedelta(minutes=15)
        assert record["variables"] == []


def test_dry_run_and_print_curl_together_show_both(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = print_curl(["txt2img", "a cat", "--dry-run"], capsys, monkeypatch)
    assert "Authorization: Bearer ****" in run.out  # the dry run
    assert "curl -sS" in run.out


def test_curl_command_never_prints_a_secret(tmp_path: Path) -> None:
    encoded: EncodedBody = encode_body({"req_key": "high_aes_general_v14", "prompt": "x"})
    signed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    auth = V4Auth("AKLTexample", "the-secret", "the-token", clock=lambda: signed_at)
    official = Connection("official", "https://visual.example.com", auth, 120, 10, 3)
    url = official.url("CVProcess", "2022-08-31")
    command = curl_command(
        official, url, auth.headers("POST", url, encoded.sha256), encoded, folder=tmp_path
    )
    assert "the-secret" not in command.text() and "the-token" not in command.text()
    assert "signed at 2026-01-02T03:04:05Z, valid until about 2026-01-02T03:19:05Z" in (
        command.text()
    )
    assert command.body_file.read_bytes() == encoded.data
    gateway = Connection("gateway", "https://relay.example.com", BearerAuth("sk-live"), 120, 10, 3)
    url = gateway.url("CVProcess", "2022-08-31")
    bearer = curl_command(
        gateway, url, gateway.auth.headers("POST", url, ""), encoded, folder=tmp_path
    )
    assert "sk-live" not in bearer.text()
    assert bearer.variables == ("VOLCCLI_API_KEY",)


def test_under_the_built_in_sandbox_the_curl_command_is_said_to_be_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = invoke(["--sandbox", "txt2img", "a fox", "--print-curl"], capsys)
    assert run.code == 0, run.err
    assert "curl -sS" in run.out
    (note,) = run.err_lines
    assert "built-in sandbox stops when volccli exits" in note
    assert "volccli sandbox serve" in note and "VOLCCLI_BASE_URL" in note
    signed = invoke(["--sandbox", "--auth", "official", "txt2img", "a fox", "--print-curl"], capsys)
    (note,) = signed.err_lines
    assert "VOLCCLI_ENDPOINT" in note and "access key pair" in note


def test_a_curl_command_that_could_not_be_printed_leaves_no_body_file(
    sandbox: Sandbox, body_folder: Path
) -> None:
    env = {**os.environ, "VOLCCLI_API_KEY": API_KEY, "TMPDIR": str(body_folder)}
    binary = Path(sys.executable).parent / "volccli"
    with open("/dev/full", "w") as full:  # every write fails: no space left
        done = subprocess.run(
            [str(binary), "--base-url", sandbox.base_url, "txt2img", "a fox", "--print-curl"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert done.returncode == 8, done.stderr
    assert list(body_folder.iterdir()) == []
