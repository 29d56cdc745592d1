"""--print-curl: a ready-to-run curl command for the exact request volccli would send.

The body goes to a private temp file sent with ``--data-binary @FILE``: the V4 signature
covers the exact bytes, and images make bodies megabytes long. Secrets never appear:
the gateway key and an STS token are shell variables the user sets, and the secret key
only ever produced the signature. The signed headers are valid for about 15 minutes, so
the command says when it was signed.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .auth import DATE_FORMAT, SIGNATURE_VALIDITY_SECONDS
from .connection import Connection
from .errors import OutputError
from .payload import EncodedBody

API_KEY_VAR = "VOLCCLI_API_KEY"
SESSION_TOKEN_VAR = "VOLCCLI_SESSION_TOKEN"
# The order curl sends them in; the signature does not depend on it.
_HEADER_ORDER = ("Host", "Content-Type", "X-Date", "X-Content-Sha256", "X-Security-Token")


@dataclass(frozen=True)
class CurlCommand:
    url: str
    body_file: Path
    size: int
    sha256: str
    command: str  # the shell command alone
    comments: tuple[str, ...]  # what to know before running it
    signed_at: datetime | None = None
    valid_until: datetime | None = None
    variables: tuple[str, ...] = ()  # shell variables the command reads

    def text(self) -> str:
        return "\n".join([*(f"# {line}" for line in self.comments), self.command])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "curl": self.command,
            "body_file": str(self.body_file),
            "content_length": self.size,
            "sha256": self.sha256,
            "variables": list(self.variables),
        }
        if self.signed_at is not None and self.valid_until is not None:
            out["signed_at"] = _iso(self.signed_at)
            out["valid_until"] = _iso(self.valid_until)
        return out


def write_body(encoded: EncodedBody, folder: Path | None = None) -> Path:
    """The exact body bytes in a new file only the user can read (it may hold private images)."""
    try:
        fd, name = tempfile.mkstemp(prefix="volccli-body-", suffix=".json", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(encoded.data)
    except OSError as exc:
        raise OutputError(
            f"cannot write the request body for --print-curl ({exc})",
            "set TMPDIR to a writable folder",
        ) from None
    os.chmod(name, 0o600)  # mkstemp already does; say it where the reader can see
    return Path(name)


def curl_command(
    connection: Connection,
    url: str,
    headers: dict[str, str],
    encoded: EncodedBody,
    *,
    label: str = "",
    folder: Path | None = None,
) -> CurlCommand:
    """The curl command for one request whose auth ``headers`` were made for ``encoded``."""
    body_file = write_body(encoded, folder)
    shown, variables = _shell_headers(connection, headers)
    lines = [f"curl -sS --fail-with-body -X POST {shlex.quote(url)}"]
    lines += [f"  -H {value}" for value in shown]
    lines.append(f"  --data-binary @{shlex.quote(str(body_file))}")
    command = " \\\n".join(lines)

    comments = [f"{label + ': ' if label else ''}POST {url}"]
    comments.append(
        f"body: {body_file} ({len(encoded)} bytes, sha256 {encoded.sha256}, mode 0600); "
        "delete it when done"
    )
    signed_at = valid_until = None
    if connection.mode == "official":
        signed_at = datetime.strptime(headers["X-Date"], DATE_FORMAT).replace(tzinfo=timezone.utc)
        valid_until = signed_at + timedelta(seconds=SIGNATURE_VALIDITY_SECONDS)
        comments.append(
            f"signed at {_iso(signed_at)}, valid until about {_iso(valid_until)} "
            f"(~{SIGNATURE_VALIDITY_SECONDS // 60} min); print it again for a fresh signature"
        )
        comments.append("the signature covers the body file's exact bytes: do not edit it")
    for variable in variables:
        what = "the gateway API key" if variable == API_KEY_VAR else "the STS session token"
        comments.append(f"needs {variable} set to {what} (never printed)")
    return CurlCommand(
        url,
        body_file,
        len(encoded),
        encoded.sha256,
        command,
        tuple(comments),
        signed_at,
        valid_until,
        tuple(variables),
    )


def _shell_headers(connection: Connection, headers: dict[str, str]) -> tuple[list[str], list[str]]:
    """Each header as a shell word; secrets replaced by variables the user sets."""
    ordered = sorted(
        headers.items(),
        key=lambda item: (
            _HEADER_ORDER.index(item[0]) if item[0] in _HEADER_ORDER else len(_HEADER_ORDER)
        ),
    )
    words: list[str] = []
    variables: list[str] = []
    for name, value in ordered:
        if name.lower() == "authorization" and connection.mode == "gateway":
            words.append(f'"Authorization: Bearer ${API_KEY_VAR}"')
            variables.append(API_KEY_VAR)
        elif name.lower() == "x-security-token":
            words.append(f'"{name}: ${SESSION_TOKEN_VAR}"')
            variables.append(SESSION_TOKEN_VAR)
        else:
            words.append(shlex.quote(f"{name}: {value}"))
    return words, variables


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(commands: list[CurlCommand], *, as_json: bool) -> str:
    if as_json:
        return "\n".join(json.dumps(c.to_json(), ensure_ascii=False) for c in commands)
    return "\n\n".join(c.text() for c in commands)
