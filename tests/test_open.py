"""--open hands the written images to the system viewer, lets go of it, and never does in CI.

The viewer here is a stand-in `xdg-open` on PATH that records what it was given, talks
on its stdout and stderr, and then lingers like a window left open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_everyday import invoke

from volccli.sandbox import API_KEY, Sandbox

BINARY = Path(sys.executable).parent / "volccli"

FAKE_VIEWER = """#!/bin/sh
echo "$1" >> "{log}"
echo "$$" >> "{pids}"
echo "viewer says hello"
echo "viewer complains" >&2
sleep 30
"""


class Viewer:
    def __init__(self, folder: Path) -> None:
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.log = folder / "opened.txt"
        self.pids = folder / "pids.txt"
        script = self.bin / "xdg-open"
        script.write_text(FAKE_VIEWER.format(log=self.log, pids=self.pids))
        script.chmod(0o755)

    def opened(self, expected: int) -> list[str]:
        """What the viewer was given, once it has started ``expected`` times (or 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            if len(lines) >= expected:
                return lines
            time.sleep(0.05)
        return self.log.read_text().splitlines() if self.log.exists() else []

    def close(self) -> None:
        if self.pids.exists():
            for pid in self.pids.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pid), signal.SIGTERM)


@pytest.fixture
def viewer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Viewer]:
    made = Viewer(tmp_path)
    monkeypatch.setenv("PATH", f"{made.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CI", raising=False)
    yield made
    made.close()


def test_open_hands_each_image_to_the_viewer_and_does_not_wait_for_it(
    sandbox: Sandbox, tmp_path: Path, viewer: Viewer
) -> None:
    env = {**os.environ, "VOLCCLI_API_KEY": API_KEY}
    argv = [str(BINARY), "--base-url", sandbox.base_url, "txt2img", "a cat", "-n", "2"]
    started = time.monotonic()
    done = subprocess.run(
        [*argv, "-o", str(tmp_path / "out"), "--open", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 25  # the viewer lingers for 30 s; volccli does not wait for it
    # stdout is volccli's alone: two JSON Lines, nothing the viewer said.
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("{") for line in lines)
    assert "viewer" not in done.stdout + done.stderr
    written = sorted(str(path) for path in (tmp_path / "out").glob("*.png"))
    assert len(written) == 2
    assert sorted(viewer.opened(2)) == written


def test_open_without_a_viewer_says_so_and_keeps_the_images(
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    monkeypatch.delenv("CI", raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "out"
    run = invoke(["--base-url", sandbox.base_url, "txt2img", "a cat", "-o", out, "--open"], capsys)
    assert run.code == 0, run.err
    assert [Path(line) for line in run.out.splitlines()] == list(out.glob("*.png"))
    assert any("found no image viewer" in line for line in run.err_lines)


def test_open_does_nothing_in_ci(
    sandbox: Sandbox,
    tmp_path: Path,
    viewer: Viewer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    monkeypatch.setenv("CI", "true")
    out = tmp_path / "out"
    run = invoke(["--base-url", sandbox.base_url, "txt2img", "a cat", "-o", out, "--open"], capsys)
    assert run.code == 0
    assert "--open is ignored in CI" in run.err
    assert len(run.out.splitlines()) == 1
    time.sleep(0.3)  # a viewer started by mistake would have written its log by now
    assert not viewer.log.exists()


def test_without_open_nothing_is_launched(
    sandbox: Sandbox,
    tmp_path: Path,
    viewer: Viewer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(["--base-url", sandbox.base_url, "txt2img", "a cat", "-o", tmp_path / "o"], capsys)
    assert run.code == 0
    time.sleep(0.3)
    assert not viewer.log.exists()
