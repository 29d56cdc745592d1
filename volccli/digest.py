"""The SHA-256 of a file, read in pieces so that a large image is never held whole."""

import hashlib
from pathlib import Path

_PIECE = 1024 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_PIECE):
            digest.update(chunk)
    return digest.hexdigest()
