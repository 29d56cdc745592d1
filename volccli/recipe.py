"""The recipe that travels with each image: a JSON sidecar and a copy inside the file.

PNG results get an iTXt chunk, JPEG results a COM segment, both inserted into the byte
stream without re-encoding pixels. ``read_recipe`` finds it again for `inspect` and
`rerun`, preferring the sidecar and falling back to the embedded copy.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Final

from .output import RECIPE_SCHEMA_FAMILY, sidecar_path

KEYWORD: Final = "volccli-recipe"
SCHEMA: Final = f"{RECIPE_SCHEMA_FAMILY}1"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_PREFIX = b"volccli-recipe:"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _itxt(text: str) -> bytes:
    # keyword, NUL, compression flag 0, method 0, empty language tag and translated
    # keyword, then the UTF-8 text. Uncompressed: the recipe is under a kilobyte, it
    # stays readable with `strings` or `grep`, and deflate's set-up cost more CPU per
    # image than the rest of the embedding. Compressed chunks are still read.
    return png_chunk(b"iTXt", KEYWORD.encode() + b"\x00\x00\x00\x00\x00" + text.encode())


def embed(data: bytes, recipe: dict[str, Any]) -> bytes:
    """Return image bytes with the recipe inside; other formats come back unchanged."""
    return b"".join(embed_parts(data, recipe))


def embed_parts(data: bytes, recipe: dict[str, Any]) -> tuple[bytes | memoryview, ...]:
    """The image with the recipe inside, as pieces to write one after the other.

    Pieces rather than one bytes object, so a large image is not copied just to insert
    a few hundred bytes.
    """
    text = json.dumps(recipe, ensure_ascii=False, separators=(",", ":"))
    view = memoryview(data)
    if data.startswith(_PNG_SIGNATURE) and data.endswith(_IEND):
        return view[: -len(_IEND)], _itxt(text), _IEND
    if data.startswith(b"\xff\xd8"):
        payload = _JPEG_PREFIX + text.encode()
        if len(payload) + 2 <= 0xFFFF:
            marker = b"\xff\xfe" + struct.pack(">H", len(payload) + 2)
            return view[:2], marker, payload, view[2:]
    return (data,)


def embed_file(path: Path, recipe: dict[str, Any]) -> bool:
    """Insert the recipe into a PNG file in place of its IEND, streaming nothing else."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        head = handle.read(8)
        if head != _PNG_SIGNATURE or size < len(_IEND) + 8:
            return False
        handle.seek(size - len(_IEND))
        if handle.read() != _IEND:
            return False
        handle.seek(size - len(_IEND))
        text = json.dumps(recipe, ensure_ascii=False, separators=(",", ":"))
        handle.write(_itxt(text) + _IEND)
        handle.truncate()
    return True


def read_embedded(path: Path) -> dict[str, Any] | None:
    """The recipe stored inside an image file, if any."""
    with path.open("rb") as handle:
        head = handle.read(8)
        if head == _PNG_SIGNATURE:
            return _read_png(handle)
        if head[:2] == b"\xff\xd8":
            handle.seek(2)
            return _read_jpeg(handle)
    return None


def _read_png(handle: Any) -> dict[str, Any] | None:
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind == b"iTXt":
            data = handle.read(length)
            keyword, _, rest = data.partition(b"\x00")
            if keyword == KEYWORD.encode():
                compressed = rest[0] == 1
                # skip flag, method, then the language tag and translated keyword
                text = rest[2:].split(b"\x00", 2)[2]
                raw = zlib.decompress(text) if compressed else text
                return _loads(raw)
            handle.seek(4, 1)
        elif kind == b"IEND":
            return None
        else:
            handle.seek(length + 4, 1)


def _read_jpeg(handle: Any) -> dict[str, Any] | None:
    while True:
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):
            return None
        length = struct.unpack(">H", handle.read(2))[0]
        data = handle.read(length - 2)
        if marker[1] == 0xFE and data.startswith(_JPEG_PREFIX):
            return _loads(data[len(_JPEG_PREFIX) :])


def _loads(raw: bytes) -> dict[str, Any] | None:
    """A volccli recipe, or None for anything else (another tool's JSON included)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not str(value.get("schema", "")).startswith(
        "volccli.recipe/"
    ):
        return None
    return value


def read_recipe(image: Path) -> tuple[dict[str, Any] | None, str]:
    """(recipe, where it was found) for an image: its sidecar first, then the file."""
    sidecar = sidecar_path(image)
    if sidecar.exists():
        try:
            found = _loads(sidecar.read_bytes())
        except OSError:
            found = None
        if found is not None:
            return found, str(sidecar)
    embedded = read_embedded(image)
    if embedded is not None:
        return embedded, f"{image} (embedded)"
    return None, ""
