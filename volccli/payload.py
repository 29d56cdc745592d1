"""Pure payload building: flag values and checked images in, request body out.

The body is a plain dict in which every local image is an ``ImageRef`` placeholder.
``encode_body`` turns it into the exact bytes that are signed and sent, streaming each
image's base64 straight into one preallocated buffer, so a large input is never held
as raw bytes, base64 text and JSON at the same time.
"""

import base64
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import InputError
from .images import ImageInput
from .kinds import (
    CONTROL_DEFAULT_STRENGTH,
    CONTROL_STRENGTH,
    CONTROL_TYPES,
    Field,
    Kind,
)

URI_REF = "uri://binary_data?index={}"
_SET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# base64 works on 3-byte groups: reading a multiple of 3 lets chunks be encoded
# independently and concatenated.
_B64_CHUNK = 3 * 256 * 1024


class ImageRef(NamedTuple):
    """A local image in ``binary_data_base64``, encoded only when the body is encoded."""

    image: ImageInput


class Control(NamedTuple):
    type: str
    image: ImageInput
    strength: float = CONTROL_DEFAULT_STRENGTH


# --- flag values ----------------------------------------------------------------------


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set key=VALUE``: VALUE is JSON when it parses, else a plain string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _SET_KEY.match(key):
            raise InputError(
                f"--set {item!r} is not key=VALUE",
                "write --set name=value, e.g. --set scale=0.7 or --set logo_info.add_logo=true",
            )
        try:
            out[key] = json.loads(raw, parse_constant=_not_json_number)
        except _NonFinite:
            raise InputError(
                f"--set {item!r}: NaN and Infinity are not JSON numbers",
                f"give a finite number, or a string: --set '{key}=\"{raw.strip()}\"'",
            ) from None
        except ValueError:
            out[key] = raw
    return out


class _NonFinite(Exception):
    pass


def _not_json_number(name: str) -> Any:
    # json.loads accepts NaN and Infinity, but json.dumps would then send invalid JSON.
    raise _NonFinite(name)


def parse_control(
    spec: str, load: Callable[[str, str], ImageInput], *, validate: bool = True
) -> Control:
    """``TYPE:IMAGE[:STRENGTH]``; IMAGE may itself contain colons (URLs, data: URIs).

    The type list and the strength range are unconfirmed: ``validate`` False
    (--no-validate) sends any type and any finite strength.
    """
    ctype, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise InputError(
            f"--control {spec!r} is not TYPE:IMAGE[:STRENGTH]",
            f"write e.g. --control canny:edges.png:0.6 (TYPE is one of {', '.join(CONTROL_TYPES)})",
        )
    ctype = ctype.strip().lower()
    if not ctype or (validate and ctype not in CONTROL_TYPES):
        raise InputError(
            f"--control type {ctype!r} is unknown",
            f"use one of {', '.join(CONTROL_TYPES)} (or --no-validate to let the server decide)",
        )
    strength = CONTROL_DEFAULT_STRENGTH
    source, colon, tail = rest.rpartition(":")
    if colon and _looks_numeric(tail):
        strength = float(tail)
        if not math.isfinite(strength) or (validate and not CONTROL_STRENGTH.contains(strength)):
            raise InputError(
                f"--control strength {tail} is outside {CONTROL_STRENGTH.describe()}",
                "use a strength above 0 and at most 1, e.g. 0.6 "
                "(or --no-validate to let the server decide)",
            )
    elif colon and _IMAGE_NAME.search(source) and re.fullmatch(r"[\w.,+-]*", tail):
        # edges.png:0,6 or edges.png:strong: a strength, mistyped, not part of the name.
        raise InputError(
            f"--control strength {tail!r} is not a number",
            "write e.g. --control canny:edges.png:0.6",
        )
    else:
        source = rest
    return Control(ctype, load(source, "--control"), strength)


_IMAGE_NAME = re.compile(r"\.(png|jpe?g|webp|gif|bmp|tiff?)$", re.IGNORECASE)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_field(f: Field, value: Any, *, validate: bool) -> Any:
    """Map CLI choice names to wire values and check ranges; return the wire value."""
    flag = f"--{f.option}"
    if f.choices is not None:
        if value in f.choices:
            return f.choices[value]
        if value in f.choices.values():
            return value
        wire = {str(v): v for v in f.choices.values()}
        if isinstance(value, str) and value in wire:  # e.g. --watermark-position 2
            return wire[value]
        if validate:
            raise InputError(
                f"{flag} {value!r} is not one of: {', '.join(map(str, f.choices))}",
                "pick one of the listed values (or --no-validate to let the server decide)",
            )
        return value
    in_range = f.range is None or not isinstance(value, (int, float)) or f.range.contains(value)
    if validate and not in_range:
        assert f.range is not None
        hint = f"pass a value in {f.range.describe()}"
        if not f.range.confirmed:
            hint += " (or --no-validate to let the server decide)"
        raise InputError(f"{flag} {value} is outside {f.range.describe()}", hint)
    return value


def field_values(kind: Kind, given: Mapping[str, Any], *, validate: bool) -> dict[str, Any]:
    """Wire values for the kind's fields: the given ones checked, documented defaults added."""
    out: dict[str, Any] = {}
    for f in kind.fields:
        value = given.get(f.name)
        if value is None:
            if f.default is not None and f.wire:
                out[f.name] = f.default
            continue
        out[f.name] = check_field(f, value, validate=validate)
    return out


# --- body assembly ------------------------------------------------------------------


@dataclass
class Inputs:
    """The images of one request, by slot name (controls for controlnet)."""

    images: dict[str, list[ImageInput]] = field(default_factory=dict)
    controls: list[Control] = field(default_factory=list)

    def all(self) -> list[ImageInput]:
        found = [img for group in self.images.values() for img in group]
        return found + [control.image for control in self.controls]


def set_path(body: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating objects on the way."""
    parts = dotted.split(".")
    node = body
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def build_body(
    kind: Kind,
    req_key: str,
    values: Mapping[str, Any],
    inputs: Inputs,
    *,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """The request body: ``base`` (from --body), then fields, images, then ``--set``.

    ``validate`` False (--no-validate) lets the assemblers send derived values outside
    the unconfirmed limits, as the field checks do for given ones.
    """
    body: dict[str, Any] = {**(base or {}), "req_key": req_key}
    for f in kind.fields:
        if f.wire and f.name in values:
            set_path(body, f.name, values[f.name])
    _place_images(kind, body, inputs)
    assembler = ASSEMBLERS.get(kind.assembler)
    if assembler is not None:
        assembler(body, values, inputs, validate)
    for key, value in (overrides or {}).items():
        set_path(body, key, value)
    # Refused here, before any folder is made, rather than when the body is encoded.
    problem = json_problem(body, "")
    if problem is not None:
        raise problem
    return body


def _place_images(kind: Kind, body: dict[str, Any], inputs: Inputs) -> None:
    local: list[ImageRef] = []
    urls: list[str] = []
    slots = {slot.name: slot for slot in kind.slots}
    for name, images in inputs.images.items():
        slot = slots[name]
        for image in images:
            if slot.wire == "uri":
                if image.url:
                    body[slot.field] = image.url
                else:
                    body[slot.field] = URI_REF.format(len(local))
                    local.append(ImageRef(image))
            elif image.url:
                urls.append(image.url)
            else:
                local.append(ImageRef(image))
            if slot.switch:
                body.setdefault(slot.switch, True)
    for control in inputs.controls:
        if control.image.url:
            urls.append(control.image.url)
        else:
            local.append(ImageRef(control.image))
    if local and urls:
        raise InputError(
            "local files and URLs cannot be mixed in binary_data_base64/image_urls",
            "give all images as local files, or all as URLs",
        )
    # Images a --body already carries are neither replaced nor mixed with in silence.
    carried = [name for name in ("binary_data_base64", "image_urls") if body.get(name)]
    if carried and (local or urls):
        raise InputError(
            f"--body already has {carried[0]}, and the image options add images too",
            f"give all images in one place: {carried[0]} in --body, or the image options",
        )
    if local:
        body["binary_data_base64"] = local
    if urls:
        body["image_urls"] = urls


def _outpaint(
    body: dict[str, Any], values: Mapping[str, Any], inputs: Inputs, validate: bool
) -> None:
    prompt = values.get("prompt")
    body.pop("prompt", None)
    if prompt:
        target = values.get("prompt_field") or "both"
        for name in ("prompt", "custom_prompt") if target == "both" else (target,):
            body[name] = prompt
    sides = ("top", "bottom", "left", "right")
    canvas_mode = bool(inputs.images.get("mask"))
    explicit = {side: values[side] for side in sides if values.get(side) is not None}
    if canvas_mode:
        if explicit or values.get("expand") is not None or values.get("aspect"):
            raise InputError(
                "--mask (canvas mode) cannot be combined with --top/--bottom/--left/--right, "
                "--expand or --aspect",
                "drop the mask for ratio mode, or drop the side options for canvas mode",
            )
        image, mask = inputs.images["image"][0], inputs.images["mask"][0]
        if (image.width, image.height) != (mask.width, mask.height) and image.width:
            raise InputError(
                f"--mask is {mask.width}x{mask.height} but the canvas is "
                f"{image.width}x{image.height}",
                "the mask must have exactly the canvas size",
            )
        return
    ratios = dict.fromkeys(sides, 0.0)
    if values.get("expand") is not None:
        ratios = dict.fromkeys(sides, float(values["expand"]))
    if values.get("aspect"):
        if explicit or values.get("expand") is not None:
            given = [f"--{side}" for side in explicit] + (
                ["--expand"] if values.get("expand") is not None else []
            )
            raise InputError(
                f"--aspect sets the side ratios itself, so {', '.join(given)} would change "
                "the aspect it asks for",
                "give either --aspect or the side ratios",
            )
        image = inputs.images["image"][0]
        if not image.width:
            raise InputError(
                "--aspect needs the image size, which a URL input does not give",
                "use a local file, or --top/--bottom/--left/--right",
            )
        ratios.update(
            aspect_ratios(
                values["aspect"], image.width, image.height, limit=1 if validate else None
            )
        )
    ratios.update(explicit)
    if not any(ratios.values()):
        raise InputError(
            "outpaint needs an extent",
            "give --expand R, --aspect W:H, one of --top/--bottom/--left/--right, or --mask",
        )
    # Untouched sides are left out: the documented range is (0, 1].
    for side in sides:
        if ratios[side]:
            body[side] = ratios[side]


def aspect_ratios(
    aspect: str, width: int, height: int, *, limit: float | None = 1
) -> dict[str, float]:
    """Side ratios that grow ``width x height`` around its centre to the aspect W:H.

    ``limit`` is the largest ratio per side (the unconfirmed 1x); None sends any.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*", aspect)
    if not match or not float(match[1]) or not float(match[2]):
        raise InputError(f"--aspect {aspect!r} is not W:H", "write e.g. --aspect 16:9")
    target = float(match[1]) / float(match[2])
    current = width / height
    if abs(target - current) < 1e-3:
        raise InputError(
            f"--aspect {aspect} is already the image's aspect",
            "outpaint needs a wider or taller aspect, or use --expand",
        )
    if target > current:  # wider: grow left and right
        each = round((target * height - width) / 2 / width, 4)
        out = {"left": each, "right": each}
    else:  # taller: grow top and bottom
        each = round((width / target - height) / 2 / height, 4)
        out = {"top": each, "bottom": each}
    if limit is not None and each > limit:
        raise InputError(
            f"--aspect {aspect} needs each side grown by {each:.2f}x, above the {limit:g}x limit",
            "pick an aspect closer to the image's, or outpaint twice "
            "(or --no-validate to let the server decide)",
        )
    return out


def _product_style(
    body: dict[str, Any], values: Mapping[str, Any], inputs: Inputs, validate: bool
) -> None:
    # A switch turned on by hand without its image: the service would look for an image
    # that is not there (--set can still send anything).
    for switch, flag, url_field, image in (
        ("mask_image_switch", "--mask-switch", "mask_image_input", "--mask"),
        ("upload_light_switch", "--upload-light", "light_image_input", "--light-map"),
    ):
        if validate and values.get(switch) is True and url_field not in body:
            raise InputError(
                f"{flag} needs {image}", f"give the image with {image}, or drop {flag}"
            )
    mode = values.get("composition")
    if mode == "auto":
        body.setdefault("auto_composition_switch", True)
    elif mode == "manual":
        body.setdefault("manual_composition_switch", True)
    if values.get("light_position") is not None:
        body.setdefault("preset_light_switch", True)


def _controlnet(
    body: dict[str, Any], values: Mapping[str, Any], inputs: Inputs, validate: bool
) -> None:
    body["controlnet_args"] = [
        {"type": control.type, "binary_data_index": index, "strength": control.strength}
        for index, control in enumerate(inputs.controls)
    ]


ASSEMBLERS: dict[str, Callable[[dict[str, Any], Mapping[str, Any], Inputs, bool], None]] = {
    "outpaint": _outpaint,
    "product_style": _product_style,
    "controlnet": _controlnet,
}


# --- encoding -----------------------------------------------------------------------


def _replace_refs(value: Any, replace: Callable[[ImageRef], Any]) -> Any:
    if isinstance(value, ImageRef):
        return replace(value)
    if isinstance(value, dict):
        return {k: _replace_refs(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_refs(v, replace) for v in value]
    return value


def image_refs(body: Mapping[str, Any]) -> list[ImageRef]:
    found: list[ImageRef] = []
    _replace_refs(dict(body), lambda ref: found.append(ref))
    return found


def describe_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body with each image replaced by its hash and source (sidecars, history)."""
    return _replace_refs(
        dict(body),
        lambda ref: {
            "sha256": ref.image.sha256,
            "source": ref.image.source,
            "bytes": ref.image.size,
        },
    )


DESCRIBED_IMAGE: frozenset[str] = frozenset({"sha256", "source", "bytes"})


def rehydrate(
    described: Mapping[str, Any], load: Callable[[Mapping[str, Any]], ImageInput]
) -> dict[str, Any]:
    """The inverse of ``describe_body``: each described image becomes an ImageRef again.

    ``load`` gets the description (``sha256``, ``source``, ``bytes``) and returns the
    checked input; it decides what a missing or changed file means.
    """

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == DESCRIBED_IMAGE:
                return ImageRef(load(value))
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(dict(described))


def preview_body(body: Mapping[str, Any]) -> str:
    """The body as sent, with base64 shortened, for --dry-run and -v."""
    shown = _replace_refs(
        dict(body),
        lambda ref: (
            f"<base64 of {ref.image.label}: {ref.image.encoded_length} chars, "
            f"sha256 {ref.image.sha256[:12]}…>"
        ),
    )
    return json.dumps(shown, ensure_ascii=False, indent=2)


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def request_identity(body: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None) -> str:
    """A stable hash of a request: its fields, the SHA-256 of every image, and ``extra``."""
    described = _replace_refs(dict(body), lambda ref: {"sha256": ref.image.sha256})
    text = canonical_json({"body": described, **(extra or {})})
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class EncodedBody:
    """The exact bytes to send, with their SHA-256 (which the V4 signature covers)."""

    data: bytes | bytearray
    sha256: str

    def __len__(self) -> int:
        return len(self.data)

    def stream(self) -> "BodyStream | bytes":
        """What to hand to requests: bytes when small, a reader over the buffer when not."""
        if isinstance(self.data, bytes):
            return self.data
        return BodyStream(self.data)


class BodyStream:
    """A file-like view of the body buffer: sent in blocks, never copied whole."""

    def __init__(self, buffer: bytearray) -> None:
        self._view = memoryview(buffer)
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> bytes:
        end = (
            len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        )
        chunk = self._view[self._pos : end].tobytes()
        self._pos = end
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(64 * 1024):
            yield chunk


def encode_body(body: Mapping[str, Any]) -> EncodedBody:
    """Serialize compactly as UTF-8 with each image's base64 written in place."""
    refs = image_refs(body)
    if not refs:
        data = _compact_json(body).encode()
        return EncodedBody(data, hashlib.sha256(data).hexdigest())
    marker = f"@@volccli-image-{uuid.uuid4().hex}-"
    index = {id(ref): n for n, ref in enumerate(refs)}
    text = _compact_json(_replace_refs(dict(body), lambda ref: f"{marker}{index[id(ref)]}@@"))
    pieces = re.split(re.escape(marker) + r"(\d+)@@", text)
    # pieces alternate: text, image number, text, image number, ..., text
    texts = [piece.encode() for piece in pieces[0::2]]
    order = [refs[int(n)] for n in pieces[1::2]]
    total = sum(map(len, texts)) + sum(ref.image.encoded_length for ref in order)
    buffer = bytearray(total)
    pos = 0
    for n, chunk in enumerate(texts):
        buffer[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
        if n < len(order):
            pos = _write_base64(order[n].image, buffer, pos)
    return EncodedBody(buffer, hashlib.sha256(buffer).hexdigest())


def _compact_json(value: Any) -> str:
    """Compact JSON; NaN and Infinity are refused, as they are not JSON (--no-validate)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise json_problem(value, "") or _not_finite("a field") from None


def _not_finite(where: str) -> InputError:
    return InputError(
        f"{where} is not a finite number, which JSON cannot carry", "give a finite number"
    )


def _not_text(where: str) -> InputError:
    # JSON's \ud800 escapes decode to such halves of a UTF-16 pair (from --set, --body or a
    # batch row); alone they are no character, and UTF-8, which the body is sent in, has none.
    return InputError(
        f"{where} holds a lone UTF-16 surrogate (such as \\ud800), which is not text",
        "give the whole character, or its \\u escapes as a complete pair",
    )


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_problem(value: Any, path: str) -> InputError | None:
    """What refuses the first value in ``value`` that JSON in UTF-8 cannot carry: NaN or
    an infinity, or text (a key or a value) with a lone surrogate; None when all can go."""
    if isinstance(value, float) and not math.isfinite(value):
        return _not_finite(path or "the body")
    if isinstance(value, str):
        return None if _is_text(value) else _not_text(path or "the body")
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and not _is_text(key):
                return _not_text(f"a key of {path or 'the body'}")
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{n}]", item) for n, item in enumerate(value))
    for where, item in items:
        found = json_problem(item, where)
        if found is not None:
            return found
    return None


def _write_base64(image: ImageInput, buffer: bytearray, pos: int) -> int:
    digest = hashlib.sha256()
    for chunk in image.chunks(_B64_CHUNK):
        digest.update(chunk)
        encoded = base64.b64encode(chunk)
        buffer[pos : pos + len(encoded)] = encoded
        pos += len(encoded)
    if digest.hexdigest() != image.sha256:
        raise InputError(
            f"{image.label} changed while it was being sent",
            "run the command again once the file is no longer being written",
        )
    return pos
