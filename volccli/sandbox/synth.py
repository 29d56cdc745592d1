"""Deterministic result images: the same (req_key, prompt, seed, index) always gives the
same PNG bytes, so tests can compare results and reruns can be checked for identity.

A picture is a bilinear gradient between four corner colours plus a few shapes, all
taken from a hash of the key: cheap to draw at any size and visibly different per key.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

PAD_CHUNK: Final = b"pdDg"  # ancillary, private, safe-to-copy: decoders skip it
_PAD_CHUNK_MAX: Final = 1 << 24
NOT_AN_IMAGE: Final = b"volccli sandbox: these bytes are deliberately not an image\n"


@dataclass(frozen=True)
class Logo:
    """The visible watermark asked for by ``logo_info`` (position/language codes as sent)."""

    position: int = 0  # 0 bottom-right, 1 bottom-left, 2 top-left, 3 top-right
    language: int = 0
    opacity: float = 1.0
    text: str = ""


@dataclass(frozen=True)
class Picture:
    req_key: str
    prompt: str
    seed: int
    index: int
    width: int
    height: int
    logo: Logo | None = None


def digest(req_key: str, prompt: str, seed: int, index: int) -> bytes:
    return hashlib.sha256(f"{req_key}\0{prompt}\0{seed}\0{index}".encode()).digest()


def png_bytes(picture: Picture, padding: int = 0) -> bytes:
    """The encoded PNG for ``picture``, padded with ``padding`` bytes of private chunk."""
    return pad_png(_render(picture), padding)


@lru_cache(maxsize=64)
def _render(picture: Picture) -> bytes:
    key = digest(picture.req_key, picture.prompt, picture.seed, picture.index)
    width, height = picture.width, picture.height
    corners = Image.new("RGB", (2, 2))
    corners.putdata([tuple(key[i : i + 3]) for i in (0, 3, 6, 9)])
    # A gradient drawn at a quarter of the size and enlarged without smoothing: its rows
    # repeat in blocks, which makes the PNG about twice as fast to encode.
    small = corners.resize((max(2, width // 4), max(2, height // 4)), Image.Resampling.BILINEAR)
    image = small.resize((width, height), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    for n in range(3):
        part = key[12 + n * 6 : 18 + n * 6]
        x0, y0 = part[0] * width // 256, part[1] * height // 256
        x1 = x0 + max(1, part[2] * width // 512)
        y1 = y0 + max(1, part[3] * height // 512)
        colour = (part[4], part[5], part[0] ^ part[3])
        if n % 2:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    if picture.logo is not None:
        _draw_logo(image, picture.logo)
    info = PngInfo()
    info.add_text(
        "volccli-sandbox",
        f"req_key={picture.req_key} seed={picture.seed} index={picture.index} "
        f"prompt_sha256={hashlib.sha256(picture.prompt.encode()).hexdigest()[:16]}",
    )
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1, pnginfo=info)
    return out.getvalue()


def _draw_logo(image: Image.Image, logo: Logo) -> None:
    """A white label in the chosen corner, blended by the opacity: enough for a test to
    see that logo_info was honoured."""
    width, height = image.size
    box_w, box_h = max(1, width // 5), max(1, height // 16)
    left = logo.position in (1, 2)
    top = logo.position in (2, 3)
    x0 = 0 if left else width - box_w
    y0 = 0 if top else height - box_h
    region = (x0, y0, x0 + box_w, y0 + box_h)
    label = Image.new("RGB", (box_w, box_h), (255, 255, 255))
    alpha = max(0.0, min(1.0, logo.opacity))
    image.paste(Image.blend(image.crop(region), label, alpha), region[:2])


def pad_png(data: bytes, padding: int) -> bytes:
    """Insert ``padding`` bytes of ``pdDg`` chunks before IEND; the PNG stays valid."""
    if padding <= 0:
        return data
    iend = data.rfind(b"IEND") - 4  # the length field precedes the type
    chunks = []
    remaining = padding
    while remaining > 0:
        size = min(remaining, _PAD_CHUNK_MAX)
        # Each chunk carries 12 bytes of framing; count them in so the total grows by
        # about ``padding`` bytes and tests can size results predictably.
        payload = bytes(max(0, size - 12))
        crc = zlib.crc32(PAD_CHUNK + payload) & 0xFFFFFFFF
        length = struct.pack(">I", len(payload))
        chunks.append(length + PAD_CHUNK + payload + struct.pack(">I", crc))
        remaining -= size
    return data[:iend] + b"".join(chunks) + data[iend:]


def clear_cache() -> None:
    _render.cache_clear()
