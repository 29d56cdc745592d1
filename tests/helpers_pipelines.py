"""Helpers for the pipeline tests: run volccli against the session sandbox, read results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from volccli.sandbox import API_KEY, Sandbox


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def volccli(capsys: pytest.CaptureFixture[str], args: Sequence[str]) -> Run:
    """Run the CLI in this process; return exit code, stdout and stderr."""
    from volccli.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.fixture
def box(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The session sandbox, reset before and after, reachable as the gateway."""
    sandbox.reset()
    monkeypatch.setenv("VOLCCLI_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    try:
        yield sandbox
    finally:
        sandbox.reset()


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def png(
    path: Path, size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30)
) -> Path:
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg") and p.is_file())


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def subprocess_env() -> dict[str, str]:
    """This test's isolated environment, for a volccli child process."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


def kill_batch_after(
    args: Sequence[str], env: dict[str, str], journal: Path, done: int, timeout: float
) -> None:
    """Run `volccli ARGS` in a child and SIGKILL it once the journal has ``done`` jobs done."""
    child = subprocess.Popen(
        [PYTHON, "-m", "volccli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.poll() is None:
            if journal.exists() and journal.read_text().count('"type": "done"') >= done:
                break
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
