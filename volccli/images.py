"""Image inputs: read, sniff, check against the API's limits, convert or fit, hash.

Every input is checked before a single byte is sent. Pillow reads only the header for
format and size; PNG chunks are CRC-checked and JPEGs must end in an EOI marker, so a
truncated file is caught without decoding its pixels. Local files stay on disk and
are streamed when the body is encoded; only stdin and pipes (up to a cap), data: URIs
and converted images live in memory.
"""

import base64
import binascii
import codecs
import hashlib
import io
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, NamedTuple
from urllib.parse import unquote, urlsplit

from .digest import file_sha256
from .errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ACCEPTED_FORMATS = ("JPEG", "PNG")
# The documented limits are unconfirmed for these req_keys, so each is a setting.
DEFAULT_MAX_BYTES = int(4.7 * 1024 * 1024)
DEFAULT_MAX_SIDE = 4096
DEFAULT_MAX_ASPECT = 3.0
_HASH_CHUNK = 1024 * 1024
_JPEG_QUALITIES = (92, 85, 78, 70, 60)
# --fit stops shrinking here: a smaller picture is of no use, so the limit is refused.
MIN_FIT_SIDE = 64
# What stdin, a pipe or a device (/dev/zero) may pour in before volccli stops reading it:
# far above any image --fit can use, far below what would exhaust memory.
MAX_STREAM_BYTES = 128 * 1024 * 1024


def stream_cap(limits: "ImageLimits") -> int:
    """The most bytes an image read from a stream may have."""
    return max(MAX_STREAM_BYTES, limits.max_bytes)


class ImageLimits(NamedTuple):
    max_bytes: int = DEFAULT_MAX_BYTES
    max_side: int = DEFAULT_MAX_SIDE
    max_aspect: float = DEFAULT_MAX_ASPECT
    convert: bool = True  # other formats become PNG (False: refuse them)
    fit: bool = False  # downsize / re-encode to meet the limits instead of refusing


@dataclass
class ImageInput:
    """One checked input image: a URL passed through, or local data with its hash."""

    label: str  # how messages name it: the path, "stdin", "data: URI" or the URL
    flag: str  # the argument or option it came from, for messages
    url: str = ""
    path: Path | None = None
    data: bytes | None = None
    sha256: str = ""
    size: int = 0
    width: int = 0
    height: int = 0
    format: str = ""
    notes: list[str] = field(default_factory=list)
    origin: Path | None = None  # the local file it was read from, as an absolute path
    # (width, height) as given, when conversion or --fit changed its size.
    resized_from: tuple[int, int] | None = None

    @property
    def source(self) -> str:
        """Where it came from, as recipes record it: a file by its absolute path, so a
        rerun finds it from any folder; otherwise the URL, "stdin" or "data: URI"."""
        return str(self.origin) if self.origin is not None else self.label

    @property
    def stem(self) -> str:
        """Its file name without the extension: the local file's, or the last part of
        the URL's path; "" for stdin and data: URIs."""
        if self.origin is not None:
            return self.origin.stem
        if self.url:
            return PurePosixPath(unquote(urlsplit(self.url).path)).stem
        return ""

    @property
    def encoded_length(self) -> int:
        return 4 * ((self.size + 2) // 3)

    def chunks(self, size: int) -> Iterator[bytes]:
        """The image bytes in pieces of ``size`` (a multiple of 3 keeps base64 aligned)."""
        if self.data is not None:
            for start in range(0, len(self.data), size):
                yield self.data[start : start + size]
            return
        assert self.path is not None
        with self.path.open("rb") as handle:
            while chunk := handle.read(size):
                yield chunk

    def describe(self) -> dict[str, object]:
        """What a sidecar and the history record about an input."""
        out: dict[str, object] = {"source": self.source}
        if self.url:
            return out
        out.update(
            sha256=self.sha256,
            bytes=self.size,
            width=self.width,
            height=self.height,
            format=self.format,
        )
        return out


def load_image(
    source: str,
    flag: str,
    limits: ImageLimits,
    *,
    read_stdin: Callable[[], bytes],
    base_dir: Path | None = None,
) -> ImageInput:
    """Resolve and check one image argument; raise InputError naming the flag."""
    if not source:
        raise InputError(f"{flag} is empty", "give a file path, an http(s) URL, '-' or a data: URI")
    scheme = _scheme(source)
    if scheme in ("http", "https"):
        return _url_input(source, flag)
    if scheme == "data":
        data = _decode_data_uri(source, flag)
        return _check_bytes(data, "data: URI", flag, limits)
    if scheme:
        raise InputError(
            f"{flag} {_short(source)}: {scheme}:// URLs are not supported",
            "use an http(s) URL, or a local path for a local file",
        )
    if source == "-":
        data = read_stdin()
        if not data:
            raise InputError(f"{flag} -: stdin is empty", "pipe the image bytes into volccli")
        _check_stream_size(data, "stdin", flag, limits)
        return _check_bytes(data, "stdin", flag, limits)
    path = Path(source).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return _check_file(path, flag, limits)


def _scheme(source: str) -> str:
    if source[:5].lower() == "data:":  # URI schemes are case-insensitive
        return "data"
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
    return match[1].lower() if match else ""


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _url_input(source: str, flag: str) -> ImageInput:
    parts = urlsplit(source)
    if "@" in parts.netloc:
        # Not echoed: image URLs are kept in recipes, dry runs and the history.
        raise InputError(
            f"{flag}: the URL carries a user or password before '@', which volccli would "
            "keep in recipes and the history",
            "give a URL without them (a signed URL's query string works), or download the "
            "image and give the file",
        )
    if not parts.hostname:
        raise InputError(
            f"{flag} {_short(source)} has no host", "write a full URL: https://host/path.png"
        )
    return ImageInput(label=source, flag=flag, url=source)


def _decode_data_uri(source: str, flag: str) -> bytes:
    header, comma, payload = source.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise InputError(
            f"{flag}: malformed data: URI",
            "use data:image/png;base64,<base64 data>",
        )
    if not payload.strip():
        raise InputError(f"{flag}: the data: URI is empty", "put the image's base64 after ','")
    try:
        return _base64_bytes(payload)
    except (binascii.Error, ValueError):
        raise InputError(
            f"{flag}: the data: URI's base64 is invalid", "re-encode the image"
        ) from None


def _base64_bytes(text: str) -> bytes:
    """Strict base64, ignoring whitespace: `base64` wraps its output at 76 columns, and
    line breaks are not part of the data."""
    return base64.b64decode(re.sub(r"\s+", "", text), validate=True)


# How an image given as base64 inside the body (--body, --set, a batch row) is named in
# messages and recorded as its source in recipes.
BODY_SOURCE = "binary_data_base64[{}]"


def in_memory_source(source: str) -> bool:
    """Does a recipe's recorded ``source`` name data that no file or URL holds (stdin, a
    data: URI, base64 in the body), which a rerun therefore cannot read again?"""
    return source in ("stdin", "data: URI") or source.startswith(BODY_SOURCE.split("{")[0])


def load_base64(text: str, flag: str, index: int, limits: ImageLimits) -> ImageInput:
    """Check an image given as base64 text in the body, as any other input is checked."""
    label = BODY_SOURCE.format(index)
    try:
        data = _base64_bytes(text)
    except (binascii.Error, ValueError):
        raise InputError(f"{flag} {label} is not valid base64", "re-encode the image") from None
    if not data:
        raise InputError(
            f"{flag} {label} is empty", "put the image's base64 there, or leave it out"
        )
    return _check_bytes(data, label, flag, limits)


def _check_file(path: Path, flag: str, limits: ImageLimits) -> ImageInput:
    label = str(path)
    if not path.exists():
        raise InputError(f"{flag} {label}: no such file", "check the path")
    if path.is_dir():
        raise InputError(f"{flag} {label} is a folder", "give an image file inside it")
    try:
        if not path.is_file():
            # A pipe (<(…), /dev/stdin, a FIFO) has no size and can be read only once.
            with path.open("rb") as handle:
                data = handle.read(stream_cap(limits) + 1)
            if not data:
                raise InputError(f"{flag} {label} is empty", "give a JPEG or PNG image")
            _check_stream_size(data, label, flag, limits)
            return _check_bytes(data, label, flag, limits)
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise InputError(
            f"{flag} {label}: cannot read ({exc.strerror})", "check its permissions"
        ) from None
    if size == 0:
        raise InputError(f"{flag} {label} is empty", "give a JPEG or PNG image")
    image = _open(path, label, flag, head)
    with image:
        fmt, width, height = image.format or "", image.width, image.height
        _check_aspect(width, height, label, flag, limits)
        _check_limits(fmt, width, height, size, label, flag, limits)
        needs_work = fmt not in ACCEPTED_FORMATS or _over_limits(width, height, size, limits)
        if not needs_work:
            _check_intact(path, image, label, flag)
    if needs_work:
        # Converting or fitting needs the pixels, so this one is read into memory.
        converted = _check_bytes(path.read_bytes(), label, flag, limits)
        converted.origin = path.absolute()
        return converted
    return ImageInput(
        label=label,
        flag=flag,
        path=path,
        sha256=file_sha256(path),
        size=size,
        width=width,
        height=height,
        format=fmt,
        origin=path.absolute(),
    )


def _check_stream_size(data: bytes, label: str, flag: str, limits: ImageLimits) -> None:
    if len(data) > stream_cap(limits):
        raise InputError(
            f"{flag} {label} goes on past {_size_text(stream_cap(limits))}, more than any "
            "image volccli can send",
            "give a JPEG or PNG file",
        )


def _pil_open(source: Path | io.BytesIO) -> "PILImage":
    """Image.open without Pillow's decompression-bomb warning on stderr: the side limit
    refuses such images with a proper message."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(source)


def _open(source: Path | io.BytesIO, label: str, flag: str, head: bytes) -> "PILImage":
    from PIL import Image, UnidentifiedImageError

    try:
        return _pil_open(source)
    except Image.DecompressionBombError:
        raise InputError(
            f"{flag} {label} has more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels, "
            "too many to decode safely",
            "downsize it below --max-image-side (default 4096) pixels a side first",
        ) from None
    except UnidentifiedImageError:
        what = "text" if _is_text(head) else "not an image Pillow can read"
        raise InputError(f"{flag} {label} is {what}", "give a JPEG or PNG image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{flag} {label} is damaged ({exc})", "re-export the image") from None


def _is_text(head: bytes) -> bool:
    # Control bytes decode as UTF-8 too, so a binary header is not text; a multi-byte
    # character cut at the end of the header still is.
    try:
        decoded = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in decoded)


def _check_intact(source: Path | bytes, image: "PILImage", label: str, flag: str) -> None:
    """Catch truncated files without decoding pixels."""
    if image.format == "PNG":
        try:
            with _pil_open(source if isinstance(source, Path) else io.BytesIO(source)) as fresh:
                fresh.verify()
        except Exception as exc:  # Pillow raises several types for broken chunks
            raise InputError(
                f"{flag} {label} is truncated or damaged ({exc})", "re-export the image"
            ) from None
    elif image.format == "JPEG":
        tail = _tail(source, 1024)
        if b"\xff\xd9" not in tail:
            raise InputError(
                f"{flag} {label} is truncated (no JPEG end marker)", "re-export the image"
            )


def _tail(source: Path | bytes, size: int) -> bytes:
    if isinstance(source, bytes):
        return source[-size:]
    with source.open("rb") as handle:
        handle.seek(max(0, source.stat().st_size - size))
        return handle.read()


def _check_aspect(width: int, height: int, label: str, flag: str, limits: ImageLimits) -> None:
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect:
        shown = f"{ratio:.2f}"
        if float(shown) <= limits.max_aspect:  # 3.003 must not read as 3.00 "above 3"
            shown = f"{ratio:.6f}".rstrip("0")
        raise InputError(
            f"{flag} {label} is {width}x{height}, aspect {shown}:1 above the "
            f"{limits.max_aspect:g}:1 limit",
            "crop it (--fit cannot change the aspect), or raise --max-aspect",
        )


def _check_bytes(data: bytes, label: str, flag: str, limits: ImageLimits) -> ImageInput:
    image = _open(io.BytesIO(data), label, flag, data[:16])
    notes: list[str] = []
    with image:
        fmt, width, height = image.format or "", image.width, image.height
        if fmt in ACCEPTED_FORMATS:
            _check_intact(data, image, label, flag)
        _check_aspect(width, height, label, flag, limits)
        _check_limits(fmt, width, height, len(data), label, flag, limits)
        given = (width, height)
        if fmt not in ACCEPTED_FORMATS or _over_limits(width, height, len(data), limits):
            data, fmt, width, height, note = _reencode(image, data, fmt, limits, label, flag)
            notes.append(f"{label}: {note}")
    return ImageInput(
        label=label,
        flag=flag,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        format=fmt,
        notes=notes,
        resized_from=given if given != (width, height) else None,
    )


def resized_like(mask: ImageInput, canvas: ImageInput) -> ImageInput:
    """``mask`` scaled to ``canvas``'s size, as a PNG: a mask must match the canvas that
    --fit made smaller. Nearest-neighbour keeps its edges hard."""
    from PIL import Image

    source = io.BytesIO(mask.data) if mask.data is not None else mask.path
    assert source is not None
    with _pil_open(source) as image:
        scaled = image.resize((canvas.width, canvas.height), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    scaled.save(buffer, "PNG")
    data = buffer.getvalue()
    note = (
        f"{mask.label}: resized {mask.width}x{mask.height} -> {canvas.width}x{canvas.height} "
        "to match the fitted canvas"
    )
    return ImageInput(
        label=mask.label,
        flag=mask.flag,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=canvas.width,
        height=canvas.height,
        format="PNG",
        notes=[*mask.notes, note],
        origin=mask.origin,
        resized_from=(mask.width, mask.height),
    )


def _over_limits(width: int, height: int, size: int, limits: ImageLimits) -> bool:
    return size > limits.max_bytes or max(width, height) > limits.max_side


def _check_limits(
    fmt: str, width: int, height: int, size: int, label: str, flag: str, limits: ImageLimits
) -> None:
    """Refuse what --fit or conversion would have to change but may not."""
    if fmt not in ACCEPTED_FORMATS and not limits.convert:
        raise InputError(
            f"{flag} {label} is {fmt or 'an unknown format'}, not JPEG or PNG",
            "convert it, or drop --no-convert to let volccli convert it",
        )
    if limits.fit:
        return
    if max(width, height) > limits.max_side:
        raise InputError(
            f"{flag} {label} is {width}x{height}, above the {limits.max_side}px limit",
            "use --fit to downsize it, or raise --max-image-side",
        )
    if size > limits.max_bytes and fmt in ACCEPTED_FORMATS:
        raise InputError(
            f"{flag} {label} is {_size_text(size)}, above the {_size_text(limits.max_bytes)} limit",
            "use --fit to shrink it, or raise --max-image-bytes",
        )


def _reencode(
    image: "PILImage", original: bytes, fmt: str, limits: ImageLimits, label: str, flag: str
) -> tuple[bytes, str, int, int, str]:
    """Convert to PNG (or JPEG when that is what fits) and downsize within the limits."""
    from PIL import ExifTags, Image, ImageOps

    before = f"{fmt or '?'} {image.width}x{image.height} {_size_text(len(original))}"
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    frames = getattr(image, "n_frames", 1)
    icc = image.info.get("icc_profile")  # kept, so that colours do not shift
    try:
        image.seek(0)  # the first frame of an animation
        if fmt == "JPEG" and max(image.size) > limits.max_side:
            # Let the JPEG decoder scale down by 1/2 .. 1/8 instead of decoding every pixel.
            scale = limits.max_side / max(image.size)
            image.draft(None, (round(image.width * scale), round(image.height * scale)))
        upright = image
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            # The re-encoded file has no EXIF, so the rotation it asks for is applied.
            upright = ImageOps.exif_transpose(image)
        work = _to_8bit(upright).convert("RGBA" if has_alpha else "RGB")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Only the header was checked so far; decoding finds a cut-short file.
        raise InputError(
            f"{flag} {label} is truncated or damaged ({exc})", "re-export the image"
        ) from None
    scale = min(1.0, limits.max_side / max(work.size))
    while True:
        size = (max(1, round(work.width * scale)), max(1, round(work.height * scale)))
        current = work if size == work.size else work.resize(size, Image.Resampling.LANCZOS)
        for out_fmt, options in _encodings(has_alpha, fmt, limits.fit):
            buffer = io.BytesIO()
            current.save(buffer, out_fmt, **options, **({"icc_profile": icc} if icc else {}))
            data = buffer.getvalue()
            if len(data) <= limits.max_bytes:
                after = f"{out_fmt} {size[0]}x{size[1]} {_size_text(len(data))}"
                verb = "fitted" if limits.fit else "converted"
                first = f" (the first of {frames} frames)" if frames > 1 else ""
                return data, out_fmt, size[0], size[1], f"{verb} {before}{first} -> {after}"
        if not limits.fit:
            raise InputError(
                f"{flag} {label} ({before}) is still above the "
                f"{_size_text(limits.max_bytes)} limit once converted",
                "use --fit to shrink it, or raise --max-image-bytes",
            )
        smaller = (round(work.width * scale * 0.85), round(work.height * scale * 0.85))
        if min(smaller) < MIN_FIT_SIDE:
            raise InputError(
                f"{flag} {label} ({before}) cannot be fitted under "
                f"{_size_text(limits.max_bytes)}: at {size[0]}x{size[1]} it is still "
                f"{_size_text(len(data))}",
                "raise --max-image-bytes",
            )
        scale *= 0.85


def _to_8bit(image: "PILImage") -> "PILImage":
    """16-bit greys scaled down to 8 bits: a plain convert clips them to white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image


def _encodings(has_alpha: bool, fmt: str, fit: bool) -> list[tuple[str, dict[str, object]]]:
    options: list[tuple[str, dict[str, object]]] = [("PNG", {"optimize": False})]
    if fmt == "JPEG" or (fit and not has_alpha):
        jpeg = [("JPEG", {"quality": q}) for q in _JPEG_QUALITIES]
        options = jpeg if fmt == "JPEG" else options + jpeg
    return options


def _size_text(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def sniff_extension(head: bytes) -> str:
    """File extension for image bytes, from their magic number."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return ""


def verify_image_file(path: Path | bytes) -> tuple[str, int, int]:
    """Check a result (a file, or its bytes) decodes as an image; return (format, width,
    height)."""
    with path.open("rb") if isinstance(path, Path) else io.BytesIO(path) as handle:
        if handle.read(8) == _PNG_SIGNATURE:
            return "PNG", *_verify_png(handle)
        handle.seek(0)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(handle) as image:
                fmt, width, height = image.format or "", image.width, image.height
                image.verify()
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ValueError(f"not a valid image ({exc})") from None
    if fmt == "JPEG" and b"\xff\xd9" not in _tail(path, 1024):
        raise ValueError("truncated JPEG")
    return fmt, width, height


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bit depths allowed for each PNG colour type (the PNG specification, table 11.1).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHUNK_TYPE = re.compile(rb"\w{4}")


def _verify_png(handle: BinaryIO) -> tuple[int, int]:
    """Walk a PNG's chunks after the signature, checking every CRC; return its size.

    The checks of Pillow's open() and verify() (a sane IHDR first, chunk types, every
    CRC up to IEND, image data present), in 1 MB reads: results can carry chunks of
    many megabytes, which Pillow would read whole, and Pillow need not be imported.
    """
    size: tuple[int, int] | None = None
    seen_data = False
    while True:
        header = handle.read(8)
        if len(header) < 8:
            raise ValueError("not a valid image (truncated PNG file)")
        length, kind = struct.unpack(">I4s", header)
        if not _PNG_CHUNK_TYPE.fullmatch(kind):
            raise ValueError(f"not a valid image (broken PNG file, chunk {kind!r})")
        if kind == b"IEND":
            if size is None or not seen_data:
                raise ValueError("not a valid image (PNG without image data)")
            return size
        crc = zlib.crc32(kind)
        remaining = length
        first = b""
        while remaining:
            piece = handle.read(min(remaining, _HASH_CHUNK))
            if not piece:
                raise ValueError("not a valid image (truncated PNG file)")
            if not first:
                first = piece[:13]
            crc = zlib.crc32(piece, crc)
            remaining -= len(piece)
        stored = handle.read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
            raise ValueError(f"not a valid image (broken PNG file, bad CRC in {kind!r})")
        if size is None:
            size = _png_header(kind, length, first)
        elif kind == b"IDAT":
            seen_data = True


def _png_header(kind: bytes, length: int, data: bytes) -> tuple[int, int]:
    if kind != b"IHDR" or length < 13:
        raise ValueError("not a valid image (PNG does not start with its header)")
    width, height, depth, colour, _, filtering, _ = struct.unpack(">IIBBBBB", data[:13])
    if depth not in _PNG_DEPTHS.get(colour, ()) or filtering or not width or not height:
        raise ValueError("not a valid image (unsupported PNG header)")
    return width, height
