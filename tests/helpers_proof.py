"""Helpers for the proof suites: faults, the bad-input catalogue and secret hygiene.

They read what a run left behind (stray temp files, the batch journal, what the sandbox
saw and billed) and look for secrets in every form a leak could take.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from volccli.journal import JOURNAL_NAME, file_sha256
from volccli.sandbox import Sandbox

# --- files left behind ------------------------------------------------------------------


def stray_files(folder: Path) -> list[str]:
    """Temp files volccli may leave after a failure: `.volccli-*` other than the journal."""
    if not folder.exists():
        return []
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob(".volccli-*")
        if path.name != JOURNAL_NAME
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove nothing changed."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.png") if p.is_file())


# --- the sandbox ------------------------------------------------------------------------


def wait_idle(sandbox: Sandbox, timeout: float = 10.0) -> dict[str, Any]:
    """Stats once no API request is being handled.

    A request the client gave up on (a read timeout) is still worked on by the server,
    and is recorded and billed only when that work ends.
    """
    deadline = time.monotonic() + timeout
    while True:
        stats = sandbox.stats()
        if stats["in_flight"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def outcomes(stats: dict[str, Any], action: str = "CVProcess") -> dict[str, int]:
    return dict(stats["requests"].get(action, {}))


def recent_for(stats: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The requests in ``recent`` whose body mentions ``text`` (a prompt, a marker)."""
    return [entry for entry in stats["recent"] if text in json.dumps(entry["body"])]


# --- the batch journal ------------------------------------------------------------------


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_journal(path: Path, *, allow_open: int = 0) -> dict[str, list[str]]:
    """Every job's records read ``start`` then ``done`` xor ``failed``, run after run.

    A ``start`` may be left without an ending only by a killed run, at most
    ``allow_open`` of them. Every ``done`` must name files that are still there with the
    recorded SHA-256. Returns each key's sequence of record types (``task`` left out).
    """
    records = journal_records(path)
    assert records and records[0]["type"] == "header", records[:1]
    steps: dict[str, list[str]] = defaultdict(list)
    for record in records[1:]:
        kind = record["type"]
        assert kind in ("start", "task", "done", "failed"), record
        if kind != "task":
            steps[record["key"]].append(kind)
        if kind == "done":
            for item in record["outputs"]:
                output = path.parent / item["path"]  # relative to the journal's folder
                assert output.is_file(), f"done without its file: {output}"
                assert file_sha256(output) == item["sha256"], f"{output} changed"
    left_open = 0
    for key, sequence in steps.items():
        position = 0
        while position < len(sequence):
            assert sequence[position] == "start", (key, sequence)
            ending = sequence[position + 1] if position + 1 < len(sequence) else "start"
            if ending == "start":
                left_open += 1  # killed while the job was out
                position += 1
            else:
                position += 2
    assert left_open <= allow_open, (left_open, dict(steps))
    return dict(steps)


# --- secrets ----------------------------------------------------------------------------


def secret_forms(secret: str) -> list[bytes]:
    """The byte patterns a leaked ``secret`` could take in a file or a stream.

    Raw, percent-encoded, hex, JSON-escaped, and base64 (standard and URL-safe) at each
    of the three alignments a secret can have inside a longer encoded string: for each,
    the part of the encoding that depends on the secret's bytes alone.
    """
    raw = secret.encode()
    percent = quote(secret, safe="")
    forms = {
        raw,
        percent.encode(),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), percent).encode(),
        quote_plus(secret, safe="").encode(),
        binascii.hexlify(raw),
        binascii.hexlify(raw).upper(),
        json.dumps(secret)[1:-1].encode(),
    }
    for offset in range(3):
        encoded = base64.b64encode(b"\x00" * offset + raw)
        # Only whole groups of three secret bytes encode the same in any context.
        core = encoded[4 * -(-offset // 3) : 4 * ((offset + len(raw)) // 3)]
        if len(core) >= 8:
            forms.add(core)
            forms.add(core.translate(bytes.maketrans(b"+/", b"-_")))
    return sorted(forms)


def png_texts(data: bytes) -> bytes:
    """The decompressed text chunks of a PNG (zTXt, iTXt, tEXt), joined."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b""
    out = []
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"tEXt":
            out.append(body)
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\x00")
            out.append(keyword + b"\x00" + zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\x00")
            compressed = rest[0] == 1
            text = rest[2:].split(b"\x00", 2)[2]
            out.append(keyword + b"\x00" + (zlib.decompress(text) if compressed else text))
    return b"\n".join(out)


def leaks(blob: bytes | str, secrets: Iterable[str]) -> list[str]:
    """Which ``secrets`` appear in ``blob`` in any of their forms."""
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    if data.startswith(b"\x89PNG"):
        data += b"\n" + png_texts(data)
    found = []
    for secret in secrets:
        if any(form in data for form in secret_forms(secret)):
            found.append(secret)
    return found


def files_under(*folders: Path) -> list[Path]:
    """Every file under the folders (hidden ones, databases and their WAL too)."""
    out: list[Path] = []
    for folder in folders:
        if folder.exists():
            out += sorted(path for path in folder.rglob("*") if path.is_file())
    return out
