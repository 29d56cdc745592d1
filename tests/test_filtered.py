"""--on-filtered fail|skip|reseed:N end to end, with the sandbox's post-audit rejections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_everyday import Run, invoke

from volccli.sandbox import API_KEY, Sandbox


def generate(
    sandbox: Sandbox,
    folder: Path,
    prompt: str,
    policy: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *extra: object,
) -> Run:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    args = ["--base-url", sandbox.base_url, "txt2img", prompt, "-o", folder]
    return invoke([*args, "--on-filtered", policy, *extra], capsys)


def sent_seeds(sandbox: Sandbox) -> list[int]:
    return [entry["body"]["seed"] for entry in sandbox.stats()["recent"]]


def test_fail_exits_5_with_one_line(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = generate(
        fresh_sandbox, tmp_path, "a cat volccli-fault:50511x1", "fail", capsys, monkeypatch
    )
    assert run.code == 5
    assert run.out == ""
    assert len(run.err_lines) == 1
    assert "50511" in run.err and "--on-filtered reseed" in run.err
    assert list(tmp_path.iterdir()) == []
    assert len(sent_seeds(fresh_sandbox)) == 1


def test_skip_exits_0_with_a_warning(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = generate(
        fresh_sandbox, tmp_path, "a cat volccli-fault:50511x1", "skip", capsys, monkeypatch
    )
    assert run.code == 0
    assert run.out == ""
    assert any(
        line.startswith("volccli: warning:") and "filtered by the audit" in line
        for line in run.err_lines
    )
    assert list(tmp_path.iterdir()) == []


def test_skip_reports_the_filtered_job_in_json(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = generate(
        fresh_sandbox,
        tmp_path,
        "a cat volccli-fault:50519",
        "skip",
        capsys,
        monkeypatch,
        "--json",
    )
    assert run.code == 0
    (record,) = [json.loads(line) for line in run.out.splitlines()]
    assert record["status"] == "filtered" and record["request_id"]


def test_reseed_sends_new_seeds_and_gives_up_after_n(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = generate(
        fresh_sandbox,
        tmp_path,
        "a cat volccli-fault:50511",
        "reseed:2",
        capsys,
        monkeypatch,
        "--seed",
        "42",
    )
    assert run.code == 5
    seeds = sent_seeds(fresh_sandbox)
    assert len(seeds) == 3 and seeds[0] == 42 and len(set(seeds)) == 3
    assert list(tmp_path.iterdir()) == []


def test_reseed_succeeds_and_records_the_new_seed(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = generate(
        fresh_sandbox,
        tmp_path,
        "a cat volccli-fault:50511x1",
        "reseed:2",
        capsys,
        monkeypatch,
        "--seed",
        "42",
    )
    assert run.code == 0, run.err
    (path,) = [Path(line) for line in run.out.splitlines()]
    sidecar = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    seeds = sent_seeds(fresh_sandbox)
    assert seeds[0] == 42 and sidecar["seed"] == seeds[-1] != 42
    assert sidecar["body"]["seed"] == sidecar["seed"]


def test_a_bad_policy_is_a_usage_error(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = generate(fresh_sandbox, tmp_path, "a cat", "reseed:0", capsys, monkeypatch)
    assert run.code == 2
    assert len(run.err_lines) == 1 and "reseed:N" in run.err
    assert fresh_sandbox.stats()["requests"] == {}
