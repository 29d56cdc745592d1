"""Per-req_key request checks, and the size of the image the real service would return.

The five documented kinds are checked against ``volccli.kinds`` (types, ranges, choices,
required fields) plus each kind's own image rules; a few other req_keys get generic
checks only. Every failure is the service's 50215 with the field named, so a client's
error message can be tested for naming the culprit.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import math
import random
import re
import struct
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from PIL import Image

from .. import kinds
from .config import is_loopback_host
from .faults import ACCESS_DENIED, INVALID_INPUT, message
from .synth import Logo

GENERIC_REQ_KEYS: Final = frozenset(
    {"jimeng_i2i_v30", "img2img_anime_accelerated_maintain_id", "img2img_xl_sft"}
)
# The formats the reference documents for input images (C.0); the client converts others.
IMAGE_FORMATS: Final = frozenset({"PNG", "JPEG"})
REMOTE_IMAGE_SIZE: Final = (1024, 1024)  # assumed for hosts the sandbox never contacts
DEFAULT_SIZE: Final = (512, 512)
MAX_OUTPUT_SIDE: Final = 4096
FETCH_TIMEOUT: Final = 2.0
FETCH_LIMIT: Final = 32 * 1024 * 1024
URI_REF: Final = re.compile(r"uri://binary_data\?index=(\d+)")
SIDES: Final = ("top", "bottom", "left", "right")
PROMPT_KEYS: Final = ("prompt", "positive_prompt", "custom_prompt")
PRODUCT_URL_FIELDS: Final = (
    "product_image_input",
    "ref_image_input",
    "mask_image_input",
    "light_image_input",
)
# Body fields the request-kind table leaves out but the service reads, per req_key, with
# the table field whose checks they share: outpainting's prompt goes by either name.
ALIASES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    kinds.OUTPAINT.req_key: (("custom_prompt", "prompt"),),
}
# Control characters in a URL: Go's net/url refuses them, and so does http.client.
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_rng = random.SystemRandom()

# Fetches a loopback image URL; None means "a host the sandbox must not contact".
Fetcher = Callable[[str], "bytes | None"]


class RequestError(Exception):
    """A business error answered in the envelope (code, message)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def invalid(where: str, problem: str) -> RequestError:
    return RequestError(INVALID_INPUT, f"Input invalid for this service: {where}: {problem}")


@dataclass(frozen=True)
class InputImage:
    where: str  # the body location, for messages: "binary_data_base64[1]"
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass(frozen=True)
class Job:
    """A validated request: what to draw and how to answer."""

    req_key: str
    prompt: str
    seed: int
    width: int
    height: int
    return_url: bool = False
    logo: Logo | None = None
    rephraser: bool = False
    predict_tags: bool = False


def validate(
    req_key: object,
    body: dict[str, Any],
    *,
    fetch: Fetcher,
    extra_req_keys: Sequence[str] = (),
    lenient_ranges: bool = False,
) -> Job:
    """Check ``body`` for ``req_key``; raise RequestError, or return the Job.

    With ``lenient_ranges``, ranges the table marks ``confirmed=False`` are not enforced,
    for trying values the real service may accept beyond what a wrapper documents.
    """
    req_key = check_req_key(req_key, extra_req_keys)
    kind = kinds.BY_REQ_KEY.get(req_key)
    if kind is None:
        return _generic(req_key, body, fetch)
    _check_fields(kind, body, lenient_ranges)
    arrays = _ImageArrays(body, fetch)
    if kind is kinds.CONTROLNET:
        size = _controlnet(body, arrays, lenient_ranges=lenient_ranges)
    else:
        size = SIZERS[req_key](body, arrays)
    size = _cap(size, MAX_OUTPUT_SIDE, MAX_OUTPUT_SIDE)
    return _job(req_key, body, size)


def check_req_key(req_key: object, extra_req_keys: Sequence[str] = ()) -> str:
    """``req_key`` if the sandbox serves it; else 50215 (missing) or 50400, the answer the
    service gives every action for a req_key the account cannot use."""
    if not isinstance(req_key, str) or not req_key:
        raise invalid("req_key", "is required")
    if req_key in kinds.BY_REQ_KEY or req_key in GENERIC_REQ_KEYS or req_key in extra_req_keys:
        return req_key
    raise RequestError(ACCESS_DENIED, message(ACCESS_DENIED))


def _job(req_key: str, body: dict[str, Any], size: tuple[int, int]) -> Job:
    return Job(
        req_key=req_key,
        prompt=prompt_of(body),
        seed=resolve_seed(body.get("seed")),
        width=size[0],
        height=size[1],
        return_url=body.get("return_url") is True,
        logo=logo_of(body.get("logo_info")),
        rephraser=body.get("use_rephraser", True) is True,
        predict_tags=body.get("use_predict_tags", True) is True,
    )


def prompt_of(body: dict[str, Any]) -> str:
    for key in PROMPT_KEYS:
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def resolve_seed(value: object) -> int:
    """The seed actually used: the request's, or a fresh one for -1 or none."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= kinds.SEED_MAX:
        return value
    return _rng.randint(0, kinds.SEED_MAX)


def logo_of(value: object) -> Logo | None:
    if not isinstance(value, dict) or value.get("add_logo") is not True:
        return None
    position = value.get("position", 0)
    language = value.get("language", 0)
    opacity = value.get("opacity", 1.0)
    text = value.get("logo_text_content", "")
    return Logo(
        position=position if isinstance(position, int) and not isinstance(position, bool) else 0,
        language=language if isinstance(language, int) and not isinstance(language, bool) else 0,
        opacity=_finite(opacity, 1.0),
        text=text if isinstance(text, str) else "",
    )


def _finite(value: object, default: float) -> float:
    """A JSON number as a finite float; ``default`` for anything else."""
    if not _is_number(value):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return default
    return number if math.isfinite(number) else default


# --- field checks from the kinds table ------------------------------------------------


def _check_fields(kind: kinds.Kind, body: dict[str, Any], lenient_ranges: bool) -> None:
    for spec in kind.wire_fields:
        present, value = _lookup(body, spec.name)
        if not present or value is None:
            if spec.required:
                raise invalid(spec.name, "is required")
            continue
        _check_value(spec, value, lenient_ranges)
        if spec.required and isinstance(value, str) and not value.strip():
            raise invalid(spec.name, "is required and must not be empty")
    for alias, name in ALIASES.get(kind.req_key, ()):
        value = body.get(alias)
        if value is not None:
            _check_value(kind.field(name)._replace(name=alias), value, lenient_ranges)


def _lookup(body: dict[str, Any], dotted: str) -> tuple[bool, object]:
    """The value at a dotted path; objects on the way must be JSON objects."""
    node: object = body
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            raise invalid(".".join(parts[:depth]), "must be an object")
        if part not in node:
            return False, None
        node = node[part]
    return True, node


def _enforced(bounds: kinds.Range | None, lenient_ranges: bool) -> bool:
    return bounds is not None and (bounds.confirmed or not lenient_ranges)


def _check_value(spec: kinds.Field, value: object, lenient_ranges: bool) -> None:
    if not _has_type(value, spec.type):
        raise invalid(spec.name, f"must be {_TYPE_NAMES[spec.type]}, not {_json_type(value)}")
    if spec.choices is not None:
        allowed = list(dict.fromkeys(spec.choices.values()))
        if value not in allowed:
            shown = ", ".join(str(item) for item in allowed)
            raise invalid(spec.name, f"must be one of {shown}, not {value!r}")
    if (
        spec.range is not None
        and _enforced(spec.range, lenient_ranges)
        and _is_number(value)
        and not spec.range.contains(value)  # type: ignore[arg-type]
    ):
        raise invalid(spec.name, f"{value!r} is out of range {spec.range.describe()}")


_TYPE_NAMES: Final = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "str": "a string",
}


def _has_type(value: object, type_name: str) -> bool:
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return _is_number(value)
    if type_name == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- images ------------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG; None for anything else or corrupt data."""
    try:
        # Only the two formats are tried: no other decoder sees the bytes.
        with Image.open(io.BytesIO(data), formats=sorted(IMAGE_FORMATS)) as image:
            size = image.size
            image.verify()
        return size
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        IndexError,
        TypeError,
        KeyError,
        ZeroDivisionError,
        Image.DecompressionBombError,
    ):
        # Pillow reports corrupt data with any of these, depending on the format.
        return None


def decode_base64_image(where: str, value: object) -> InputImage:
    if not isinstance(value, str):
        raise invalid(where, f"must be a base64 string, not {_json_type(value)}")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(
            where, "is not valid base64 (send the raw base64, without a data: prefix)"
        ) from None
    size = image_size(data)
    if size is None:
        raise invalid(where, "is not a PNG or JPEG image")
    return InputImage(where, *size)


def http_url(where: str, value: object) -> str:
    """``value`` if it is an http(s) URL with a host (and a valid port, if any)."""
    if not isinstance(value, str):
        raise invalid(where, f"must be an http(s) URL, not {_json_type(value)}")
    if _CONTROL_CHARS.search(value):
        raise invalid(where, "is not a valid URL: it contains a control character")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError as exc:
        raise invalid(where, f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise invalid(where, "must be an http(s) URL")
    return value


def url_image(where: str, value: object, fetch: Fetcher) -> InputImage:
    url = http_url(where, value)
    try:
        data = fetch(url)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # A loopback server that answers garbage is a failed download, as is a path
        # http.client will not send.
        raise invalid(where, f"could not download the image ({_reason(exc)})") from None
    if data is None:
        return InputImage(where, *REMOTE_IMAGE_SIZE)
    size = image_size(data)
    if size is None:
        raise invalid(where, "the downloaded file is not a PNG or JPEG image")
    return InputImage(where, *size)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A loopback URL must not be able to send the sandbox to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxy handler: a proxy from the environment would be a host other than loopback.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def fetch_loopback(url: str) -> bytes | None:
    """Download ``url`` if its host is a loopback address; None (no contact) otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not is_loopback_host(host):
        return None
    if host.lower() == "localhost":
        # Connect to 127.0.0.1 itself: a hosts file could map "localhost" anywhere.
        netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
        url = parts._replace(netloc=netloc).geturl()
    with _OPENER.open(url, timeout=FETCH_TIMEOUT) as response:
        data = response.read(FETCH_LIMIT + 1)
    if len(data) > FETCH_LIMIT:
        raise ValueError("the image is larger than 32 MB")
    return data


class _ImageArrays:
    """The two image arrays of a body, decoded and sized once."""

    def __init__(self, body: dict[str, Any], fetch: Fetcher) -> None:
        self.base64 = [
            decode_base64_image(where, item) for where, item in _array(body, "binary_data_base64")
        ]
        self.urls = [url_image(where, item, fetch) for where, item in _array(body, "image_urls")]
        self.fetch = fetch

    @property
    def images(self) -> list[InputImage]:
        # The service prefers binary_data_base64 when a body has both.
        return self.base64 or self.urls

    @property
    def field(self) -> str:
        return "binary_data_base64" if self.base64 or not self.urls else "image_urls"

    def reference(self, where: str, value: object) -> InputImage:
        """A URL field's image: an http(s) URL or ``uri://binary_data?index=N``."""
        if not isinstance(value, str):
            raise invalid(where, f"must be a string, not {_json_type(value)}")
        match = URI_REF.fullmatch(value)
        if match:
            return self._indexed(where, int(match.group(1)))
        if value.startswith("uri://"):
            raise invalid(where, "must be an http(s) URL or uri://binary_data?index=N")
        return url_image(where, value, self.fetch)

    def _indexed(self, where: str, index: int) -> InputImage:
        if index >= len(self.base64):
            raise invalid(
                where,
                f"refers to binary_data_base64[{index}], which does not exist "
                f"({len(self.base64)} given)",
            )
        return self.base64[index]


def _array(body: dict[str, Any], name: str) -> list[tuple[str, object]]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(name, f"must be an array, not {_json_type(value)}")
    return [(f"{name}[{index}]", item) for index, item in enumerate(value)]


# --- output sizes, one function per kind ----------------------------------------------


def _txt2img(body: dict[str, Any], arrays: _ImageArrays) -> tuple[int, int]:
    return _int(body.get("width"), 512), _int(body.get("height"), 512)


def _edit(body: dict[str, Any], arrays: _ImageArrays) -> tuple[int, int]:
    images = arrays.images
    if len(images) != 1:
        raise invalid(arrays.field, f"exactly one image is required, got {len(images)}")
    return images[0].size


def _outpaint(body: dict[str, Any], arrays: _ImageArrays) -> tuple[int, int]:
    images = arrays.images
    limit = _int(body.get("max_width"), 1920), _int(body.get("max_height"), 1920)
    given = [side for side in SIDES if body.get(side) is not None]
    if len(images) == 1:
        if not any(float(body[side]) > 0 for side in given):
            raise invalid(
                "top", "ratio mode needs at least one of top, bottom, left, right greater than 0"
            )
        width, height = images[0].size
        ratio = {side: float(body.get(side) or 0) for side in SIDES}
        grown = (
            round(width * (1 + ratio["left"] + ratio["right"])),
            round(height * (1 + ratio["top"] + ratio["bottom"])),
        )
        return _cap(grown, *limit)
    if len(images) == 2:
        if given:
            raise invalid(
                given[0], "side ratios are not allowed in canvas mode (canvas and mask images)"
            )
        canvas, mask = images
        if canvas.size != mask.size:
            raise invalid(
                mask.where,
                f"the mask must be the same size as the canvas "
                f"({_wxh(mask.size)} vs {_wxh(canvas.size)})",
            )
        return _cap(canvas.size, *limit)
    raise invalid(
        arrays.field,
        f"one image (ratio mode) or two (canvas and mask) are required, got {len(images)}",
    )


def _product_style(body: dict[str, Any], arrays: _ImageArrays) -> tuple[int, int]:
    for name in ("product_image_input", "ref_image_input"):
        if not body.get(name):
            raise invalid(name, "is required")
    product = arrays.reference("product_image_input", body["product_image_input"])
    for name in PRODUCT_URL_FIELDS[1:]:
        if body.get(name) is not None:
            arrays.reference(name, body[name])
    if body.get("auto_composition_switch") is True:
        return _int(body.get("canvas_width"), 1000), _int(body.get("canvas_height"), 1000)
    longer = _int(body.get("longer_side"), 1600)
    factor = longer / max(product.size)
    return max(1, round(product.width * factor)), max(1, round(product.height * factor))


def _controlnet(
    body: dict[str, Any], arrays: _ImageArrays, *, lenient_ranges: bool = False
) -> tuple[int, int]:
    images = arrays.images
    if not images:
        raise invalid("binary_data_base64", "at least one control image is required")
    args = body.get("controlnet_args")
    if args is None:
        raise invalid("controlnet_args", "is required")
    if not isinstance(args, list) or not args:
        raise invalid("controlnet_args", "must be a non-empty array")
    for index, arg in enumerate(args):
        _check_control(f"controlnet_args[{index}]", arg, len(images), lenient_ranges)
    return images[args[0]["binary_data_index"]].size


def _check_control(where: str, arg: object, count: int, lenient_ranges: bool) -> None:
    if not isinstance(arg, dict):
        raise invalid(where, "must be an object")
    kind = arg.get("type")
    if kind not in kinds.CONTROL_TYPES:
        raise invalid(
            f"{where}.type", f"must be one of {', '.join(kinds.CONTROL_TYPES)}, not {kind!r}"
        )
    index = arg.get("binary_data_index")
    if not (isinstance(index, int) and not isinstance(index, bool)) or not 0 <= index < count:
        raise invalid(
            f"{where}.binary_data_index",
            f"must be an index of the image list [0, {count - 1}], not {index!r}",
        )
    strength = arg.get("strength")
    strength_range = kinds.CONTROL_STRENGTH
    if strength is not None and (
        not _is_number(strength)
        or (_enforced(strength_range, lenient_ranges) and not strength_range.contains(strength))
    ):
        raise invalid(
            f"{where}.strength", f"{strength!r} is out of range {kinds.CONTROL_STRENGTH.describe()}"
        )


SIZERS: Final[dict[str, Callable[[dict[str, Any], _ImageArrays], tuple[int, int]]]] = {
    kinds.TXT2IMG.req_key: _txt2img,
    kinds.EDIT.req_key: _edit,
    kinds.OUTPAINT.req_key: _outpaint,
    kinds.PRODUCT_STYLE.req_key: _product_style,
    kinds.CONTROLNET.req_key: _controlnet,
}


def _generic(req_key: str, body: dict[str, Any], fetch: Fetcher) -> Job:
    """Other req_keys: only images must decode and uri:// references must exist."""
    arrays = _ImageArrays(body, fetch)
    for where, text in _strings(body, ""):
        for match in URI_REF.finditer(text):
            arrays.reference(where, match.group(0))
    first = arrays.images[0].size if arrays.images else DEFAULT_SIZE
    width = _int(body.get("width"), first[0])
    height = _int(body.get("height"), first[1])
    return _job(req_key, body, _cap((width, height), MAX_OUTPUT_SIDE, MAX_OUTPUT_SIDE))


def _strings(node: object, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{where}[{index}]")


def _int(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_OUTPUT_SIDE:
        return value
    return default


def _cap(size: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """Scale down to fit, keeping the aspect ratio (never up)."""
    width, height = size
    if width <= max_width and height <= max_height:
        return width, height
    factor = min(max_width / width, max_height / height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
