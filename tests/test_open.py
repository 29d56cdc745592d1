"""--open hands the written images to the system viewer, and never does in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from helpers_everyday import invoke

from volccli.sandbox import API_KEY, Sandbox


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def launch(url: str, wait: bool = False, locate: bool = False) -> int:
        calls.append(url)
        return 0

    monkeypatch.setattr(typer, "launch", launch)
    return calls


def run_open(
    sandbox: Sandbox, folder: Path, capsys: pytest.CaptureFixture[str], *extra: object
) -> list[str]:
    run = invoke(
        ["--base-url", sandbox.base_url, "txt2img", "a cat", "-o", folder, "--open", *extra],
        capsys,
    )
    assert run.code == 0, run.err
    return run.out.splitlines()


def test_open_launches_each_written_image(
    sandbox: Sandbox,
    tmp_path: Path,
    launched: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    written = run_open(sandbox, tmp_path, capsys, "-n", "2")
    assert len(written) == 2
    assert launched == written
    assert all(Path(path).is_file() for path in launched)


def test_open_does_nothing_in_ci(
    sandbox: Sandbox,
    tmp_path: Path,
    launched: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    monkeypatch.setenv("CI", "true")
    run = invoke(
        ["--base-url", sandbox.base_url, "txt2img", "a cat", "-o", tmp_path, "--open"], capsys
    )
    assert run.code == 0
    assert launched == []
    assert "--open is ignored in CI" in run.err
    assert len(run.out.splitlines()) == 1


def test_without_open_nothing_is_launched(
    sandbox: Sandbox,
    tmp_path: Path,
    launched: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(["--base-url", sandbox.base_url, "txt2img", "a cat", "-o", tmp_path], capsys)
    assert run.code == 0
    assert launched == []
