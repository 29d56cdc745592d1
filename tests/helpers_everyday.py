"""Helpers for the tests of doctor, --print-curl, completions, docs and friendly errors."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def invoke(
    args: Sequence[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch | None = None,
    *,
    stdin: str | None = None,
) -> Run:
    """Run ``volccli.cli.main`` in-process and return its exit code and output."""
    from volccli.cli import main

    if stdin is not None:
        if monkeypatch is None:
            raise ValueError("stdin needs monkeypatch")
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()  # drop anything printed before
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def write_image(
    path: Path, width: int = 96, height: int = 64, *, mode: str = "RGB", colour: object = None
) -> Path:
    """A small solid image; the format follows the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = colour if colour is not None else ((30, 120, 200) if mode == "RGB" else 0)
    Image.new(mode, (width, height), fill).save(path)  # type: ignore[arg-type]  # PIL's fill type
    return path


def free_port() -> int:
    """A loopback port with nothing listening on it (for unreachable-endpoint tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
