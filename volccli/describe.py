"""Show a request without sending it: --dry-run text and JSON, secrets masked."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .auth import mask

SECRET_HEADERS = ("x-security-token",)


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to print: Bearer keys and STS tokens hidden, the AK shortened."""
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower == "authorization" and value.startswith("Bearer "):
            value = "Bearer ****"
        elif lower == "authorization":
            value = re.sub(r"Credential=([^/]+)/", lambda m: f"Credential={mask(m[1])}/", value)
        elif lower in SECRET_HEADERS:
            value = "****"
        out[name] = value
    return out


def dry_run_text(
    url: str, headers: Mapping[str, str], body_preview: str, size: int, sha256: str
) -> str:
    lines = [f"POST {url}"]
    lines += [f"{name}: {value}" for name, value in masked_headers(headers).items()]
    lines.append(f"Content-Length: {size}")
    lines.append("")
    lines.append(body_preview)
    lines.append(
        f"# the body would be sent as {size} bytes of compact UTF-8 JSON, sha256 {sha256}; "
        "nothing was sent"
    )
    return "\n".join(lines)


def dry_run_json(
    url: str, headers: Mapping[str, str], body_preview: str, size: int, sha256: str
) -> str:
    record: dict[str, Any] = {
        "method": "POST",
        "url": url,
        "headers": masked_headers(headers),
        "body": json.loads(body_preview),
        "content_length": size,
        "sha256": sha256,
    }
    return json.dumps(record, ensure_ascii=False)
