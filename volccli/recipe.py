"""The recipe that travels with each image: a JSON sidecar and a copy inside the file.

PNG results get an iTXt chunk, JPEG results a COM segment, both inserted into the byte
stream without re-encoding pixels. ``lookup`` reads both again for `inspect` and `rerun`
and says what is wrong with each; ``read_recipe`` picks one: the sidecar when it is sound
and describes this very file, else the embedded copy.

Everything read here may be damaged or hand-edited: a file cut short, a chunk that does
not inflate, a sidecar with the right schema and the wrong types. Reading never raises
anything but ``RecipeDamaged`` (a ValueError) and OSError, and ``shape_problem`` checks a
recipe's fields once, so the commands that use one can trust its types.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .digest import file_sha256
from .jsonkind import json_kind
from .output import RECIPE_SCHEMA_FAMILY, is_recipe, sidecar_path

KEYWORD: Final = "volccli-recipe"
SCHEMA: Final = f"{RECIPE_SCHEMA_FAMILY}1"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_PREFIX = b"volccli-recipe:"
# Far above any real recipe (under a kilobyte, a long prompt included); it bounds what a
# hostile or damaged file makes us read, or inflate, into memory.
MAX_RECIPE_BYTES: Final = 8 * 1024 * 1024


class RecipeDamaged(ValueError):
    """A recipe, or the file around it, that cannot be read; the text says why."""


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
    """The recipe stored inside an image file; None when the file holds none.

    RecipeDamaged when the file is cut short before its recipe could be found, or the
    recipe does not decode.
    """
    with path.open("rb") as handle:
        head = handle.read(8)
        if head == _PNG_SIGNATURE:
            return _read_png(handle)
        if head[:2] == b"\xff\xd8":
            handle.seek(2)
            return _read_jpeg(handle)
    return None


def _exactly(handle: Any, size: int, where: str) -> bytes:
    data = handle.read(size)
    if len(data) < size:
        raise RecipeDamaged(f"the file ends inside {where}")
    return data


def _read_png(handle: Any) -> dict[str, Any] | None:
    keyword = KEYWORD.encode() + b"\x00"
    while True:
        header = handle.read(8)
        if not header:
            raise RecipeDamaged("the file ends before the PNG's IEND chunk")
        if len(header) < 8:
            raise RecipeDamaged("the file ends inside a PNG chunk header")
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return None
        if kind != b"iTXt":
            handle.seek(length + 4, 1)  # past the data and the CRC
            continue
        start = _exactly(handle, min(length, len(keyword)), "a PNG iTXt chunk")
        if start != keyword:
            handle.seek(length - len(start) + 4, 1)
            continue
        if length > MAX_RECIPE_BYTES:
            raise RecipeDamaged(f"its PNG chunk claims {length:,} bytes")
        data = start + _exactly(handle, length - len(start), "the recipe's PNG chunk")
        (crc,) = struct.unpack(">I", _exactly(handle, 4, "the recipe's PNG chunk"))
        if zlib.crc32(kind + data) != crc:
            raise RecipeDamaged("its PNG chunk fails its CRC check")
        return _decode(_itxt_text(data[len(keyword) :]))


def _itxt_text(rest: bytes) -> bytes:
    """The text of an iTXt chunk after its keyword, inflated if it was stored deflated."""
    # compression flag, method, language tag NUL, translated keyword NUL, then the text
    parts = rest[2:].split(b"\x00", 2)
    if len(rest) < 2 or len(parts) < 3:
        raise RecipeDamaged("its PNG chunk is cut short")
    flag, text = rest[0], parts[2]
    if flag == 0:
        return text
    if flag != 1 or rest[1] != 0:
        raise RecipeDamaged(f"its PNG chunk names an unknown compression ({flag}, {rest[1]})")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(text, MAX_RECIPE_BYTES + 1)
    except zlib.error as exc:
        raise RecipeDamaged(f"its deflated text does not inflate: {exc}") from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeDamaged(f"its deflated text inflates to more than {MAX_RECIPE_BYTES:,} bytes")
    if not inflater.eof:
        raise RecipeDamaged("its deflated text is cut short")
    return raw


def _read_jpeg(handle: Any) -> dict[str, Any] | None:
    # volccli puts the recipe first, right after SOI; others' segments are skipped up to
    # the image data (SOS) or the end (EOI).
    while True:
        marker = handle.read(2)
        if len(marker) < 2:
            raise RecipeDamaged("the file ends before the JPEG's image data")
        if marker[0] != 0xFF:
            raise RecipeDamaged("the JPEG's segments are out of step (a marker is missing)")
        if marker[1] == 0xFF:  # a fill byte before the marker
            handle.seek(-1, 1)
            continue
        if marker[1] in (0xD9, 0xDA):
            return None
        if marker[1] == 0x01 or 0xD0 <= marker[1] <= 0xD7:
            continue  # markers without a length
        (length,) = struct.unpack(">H", _exactly(handle, 2, "a JPEG segment header"))
        if length < 2:
            raise RecipeDamaged(f"a JPEG segment claims an impossible length ({length})")
        if marker[1] != 0xFE:
            handle.seek(length - 2, 1)
            continue
        data = _exactly(handle, length - 2, "a JPEG comment segment")
        if data.startswith(_JPEG_PREFIX):
            return _decode(data[len(_JPEG_PREFIX) :])


def _decode(raw: bytes) -> dict[str, Any]:
    """The recipe in a chunk or comment that volccli marked as its own."""
    value = _json(raw)
    if not is_recipe(value):
        raise RecipeDamaged("its text is JSON but not a volccli recipe")
    return value


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise RecipeDamaged(f"not JSON: {exc}") from None


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The recipe in a sidecar file; None when it holds another tool's JSON.

    RecipeDamaged when it is not a regular file, too large, or not JSON; OSError when
    it cannot be read.
    """
    if not path.is_file():
        raise RecipeDamaged("it is not a regular file")
    with path.open("rb") as handle:
        raw = handle.read(MAX_RECIPE_BYTES + 1)
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeDamaged(f"it is larger than {MAX_RECIPE_BYTES:,} bytes")
    value = _json(raw)
    return value if is_recipe(value) else None


# --- a recipe's shape ------------------------------------------------------------------

_TEXT_FIELDS = (
    "volccli",
    "command",
    "req_key",
    "request_hash",
    "request_id",
    "task_id",
    "started",
    "finished",
)
_WHOLE_FIELDS = ("seed", "index", "image_index")
# What a recorded input and the written file may say about themselves, by type.
_INPUT_FIELDS: Final = {
    "source": str,
    "sha256": str,
    "bytes": int,
    "width": int,
    "height": int,
    "format": str,
}
_FILE_FIELDS: Final = {**_INPUT_FIELDS, "name": str}
# Both end up in the request URL: an API action name and a date.
_ACTION = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


def shape_problem(recipe: Mapping[str, Any]) -> str:
    """What is wrong with a recipe's fields, in words; "" when it can be used as it is.

    Only the fields volccli reads are checked; unknown ones are left alone, so a recipe
    from a newer version still works.
    """
    body = recipe.get("body")
    if not isinstance(body, dict):
        return _wrong("body", body, "an object", present="body" in recipe)
    for key in _TEXT_FIELDS:
        if recipe.get(key) is not None and not isinstance(recipe[key], str):
            return _wrong(key, recipe[key], "a string")
    for key in _WHOLE_FIELDS:
        if recipe.get(key) is not None and not _is_int(recipe[key]):
            return _wrong(key, recipe[key], "a whole number")
    for key, pattern, example in (
        ("action", _ACTION, "CVProcess"),
        ("version", _VERSION, "2022-08-31"),
    ):
        value = recipe.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return f'"{key}" should be like "{example}", not {json.dumps(value)[:40]}'
    if body.get("req_key") is not None and not isinstance(body["req_key"], str):
        return _wrong("body.req_key", body["req_key"], "a string")
    if not (recipe.get("req_key") or body.get("req_key")):
        return "it names no req_key"
    # Present means usable: other code reads found.get("file", {}) and the like.
    inputs = recipe.get("inputs", [])
    if "inputs" in recipe:
        if not isinstance(inputs, list):
            return _wrong("inputs", inputs, "a list of objects")
        for n, item in enumerate(inputs):
            problem = _fields_problem(f"inputs[{n}]", item, _INPUT_FIELDS)
            if problem:
                return problem
    if "file" in recipe:
        problem = _fields_problem("file", recipe["file"], _FILE_FIELDS)
        if problem:
            return problem
    return _images_problem(body, "body")


def _images_problem(value: Any, where: str) -> str:
    """The first image description in the body (sha256, source, bytes) of the wrong types."""
    from .payload import DESCRIBED_IMAGE

    if isinstance(value, dict):
        if set(value) == DESCRIBED_IMAGE:
            return _fields_problem(where, value, _INPUT_FIELDS)
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return ""
    for key, item in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
        problem = _images_problem(item, inner)
        if problem:
            return problem
    return ""


def _fields_problem(where: str, value: Any, types: Mapping[str, type]) -> str:
    if not isinstance(value, dict):
        return _wrong(where, value, "an object")
    for key, kind in types.items():
        item = value.get(key)
        if item is None:
            continue
        if kind is int and not _is_int(item):
            return _wrong(f"{where}.{key}", item, "a whole number")
        if kind is str and not isinstance(item, str):
            return _wrong(f"{where}.{key}", item, "a string")
    return ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wrong(key: str, value: Any, wanted: str, *, present: bool = True) -> str:
    return f'"{key}" should be {wanted}, not {json_kind(value) if present else "missing"}'


# --- finding an image's recipe -----------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """What an image's sidecar and its embedded copy hold; the caller picks which to use.

    A recipe here has passed ``shape_problem``; one that did not is a problem instead.
    """

    sidecar: Path
    from_sidecar: dict[str, Any] | None = None
    # Why a sidecar that is there cannot be used, as a predicate: "is damaged (...)".
    sidecar_problem: str = ""
    # The sidecar records a SHA-256 that is not the image's: it describes an earlier
    # image of that name (one overwritten with --no-sidecar), or the image was edited.
    stale: bool = False
    embedded: dict[str, Any] | None = None
    embedded_problem: str = ""  # why the copy inside the file cannot be used


def lookup(image: Path) -> Lookup:
    """Read an image's sidecar and embedded recipe; OSError only for the image itself."""
    sidecar = sidecar_path(image)
    from_sidecar, sidecar_problem, stale = None, "", False
    if (sidecar.exists() or sidecar.is_symlink()) and not sidecar.is_file():
        sidecar_problem = "is not a regular file"  # a folder, a FIFO, a dangling link
    elif sidecar.exists():
        try:
            from_sidecar = read_sidecar(sidecar)
        except RecipeDamaged as exc:
            sidecar_problem = f"is damaged ({exc})"
        except OSError as exc:
            sidecar_problem = f"cannot be read ({exc.strerror or exc})"
        else:
            if from_sidecar is None:
                sidecar_problem = "is not a volccli recipe"
            elif problem := shape_problem(from_sidecar):
                from_sidecar, sidecar_problem = None, f"is damaged ({problem})"
        recorded = ((from_sidecar or {}).get("file") or {}).get("sha256")
        stale = bool(recorded) and recorded != file_sha256(image)
    embedded, embedded_problem = None, ""
    try:
        embedded = read_embedded(image)
    except RecipeDamaged as exc:
        embedded_problem = str(exc)
    if embedded is not None and (problem := shape_problem(embedded)):
        embedded, embedded_problem = None, problem
    return Lookup(sidecar, from_sidecar, sidecar_problem, stale, embedded, embedded_problem)


def read_recipe(image: Path) -> tuple[dict[str, Any] | None, str]:
    """(recipe, where it was found) for an image, or (None, "").

    The sidecar when it is sound and describes this very file, else the embedded copy,
    else a sidecar that records another file's SHA-256 (the caller can compare it).
    """
    found = lookup(image)
    if found.from_sidecar is not None and not found.stale:
        return found.from_sidecar, str(found.sidecar)
    if found.embedded is not None:
        return found.embedded, f"{image} (embedded)"
    if found.from_sidecar is not None:
        return found.from_sidecar, str(found.sidecar)
    return None, ""
