"""Test helpers: run the CLI in-process, make image files, read what the sandbox received.

Other test modules import these; keep the signatures stable.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from volccli.sandbox import API_KEY, Sandbox


@dataclass(frozen=True)
class Result:
    """What one in-process run of ``volccli`` left behind."""

    exit_code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_cli(
    args: Sequence[object],
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """Call ``volccli.cli.main(args)`` with stdin, stdout and stderr captured.

    ``input`` feeds stdin; ``env`` sets (or, with None, removes) environment variables
    for the duration of the call only.
    """
    from volccli.cli import main

    raw_in = input.encode() if isinstance(input, str) else (input or b"")
    out, err = io.BytesIO(), io.BytesIO()
    fake_in = io.TextIOWrapper(io.BytesIO(raw_in), encoding="utf-8")
    fake_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    fake_err = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_env = {name: os.environ.get(name) for name in (env or {})}
    for name, value in (env or {}).items():
        _set_env(name, value)
    sys.stdin, sys.stdout, sys.stderr = fake_in, fake_out, fake_err
    try:
        try:
            main([str(arg) for arg in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        fake_out.flush()
        fake_err.flush()
        return Result(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        for name, value in saved_env.items():
            _set_env(name, value)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# --- the sandbox --------------------------------------------------------------------------


def gateway(sandbox: Sandbox) -> tuple[list[str], dict[str, str | None]]:
    """Arguments and environment that point a command at ``sandbox`` through the gateway."""
    return ["--base-url", sandbox.base_url], {"VOLCCLI_API_KEY": API_KEY}


def api_requests(sandbox: Sandbox) -> int:
    """API requests the sandbox has answered, of any action and outcome."""
    stats = sandbox.stats()
    return sum(sum(counts.values()) for counts in stats["requests"].values())


def sent_bodies(sandbox: Sandbox) -> list[Any]:
    """Bodies the sandbox received, oldest first, each base64 image shortened."""
    return [entry["body"] for entry in sandbox.stats()["recent"]]


def b64_summary(data: bytes) -> str:
    """How the sandbox's stats show one base64 image of ``data``."""
    text = base64.b64encode(data)
    return f"<base64 {len(text)} bytes sha256={hashlib.sha256(text).hexdigest()[:16]}>"


# --- images -------------------------------------------------------------------------------


def image_bytes(
    width: int,
    height: int,
    fmt: str = "PNG",
    colour: tuple[int, ...] = (200, 40, 40),
    mode: str = "RGB",
    **save: Any,
) -> bytes:
    """A solid image in ``fmt`` (PNG, JPEG, WEBP, GIF, BMP …)."""
    out = io.BytesIO()
    Image.new(mode, (width, height), colour).save(out, format=fmt, **save)
    return out.getvalue()


def write_image(path: Path, width: int, height: int, fmt: str = "PNG", **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(width, height, fmt, **kw))
    return path


def noise_image(width: int, height: int, fmt: str = "PNG", seed: int = 1) -> bytes:
    """Random pixels: an image that compresses badly, for size limits."""
    import random

    rng = random.Random(seed)
    pixels = rng.randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, format=fmt)
    return out.getvalue()


def padded_png(width: int, height: int, total: int) -> bytes:
    """A valid PNG of at least ``total`` bytes: a small picture plus a private chunk."""
    data = image_bytes(width, height)
    extra = max(0, total - len(data) - 12)
    chunk = (
        struct.pack(">I", extra)
        + b"prIv"
        + bytes(extra)
        + struct.pack(">I", zlib.crc32(b"prIv" + bytes(extra)))
    )
    return data[:33] + chunk + data[33:]  # after the signature and IHDR


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size without carrying its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def image_size(data_or_path: bytes | Path) -> tuple[int, int]:
    source = data_or_path if isinstance(data_or_path, Path) else io.BytesIO(data_or_path)
    with Image.open(source) as image:
        image.load()
        return image.size


def listing(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones too), relative, sorted; folders
    end in '/', so a refused command that leaves an empty output folder behind shows."""
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder)) + ("/" if p.is_dir() else "") for p in folder.rglob("*")
    )
