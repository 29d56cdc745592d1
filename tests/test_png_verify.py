"""verify_image_file's own PNG check: the same verdicts as Pillow's open() + verify(),
without reading a large chunk whole."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from volccli.images import verify_image_file


def png(width: int = 12, height: int = 7, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), 90).save(out, format="PNG")
    return out.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pillow_verdict(path: Path) -> tuple[str, int, int] | None:
    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()
    except Exception:
        return None
    return "PNG", size[0], size[1]


def our_verdict(path: Path) -> tuple[str, int, int] | None:
    try:
        return verify_image_file(path)
    except ValueError:
        return None


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "I;16"])
def test_good_pngs_give_pillows_answer(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png(31, 17, mode))
    assert verify_image_file(path) == ("PNG", 31, 17) == pillow_verdict(path)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(8, 200), flip=st.integers(1, 255))
def test_a_damaged_byte_is_judged_like_pillow(
    tmp_path_factory: pytest.TempPathFactory, position: int, flip: int
) -> None:
    data = bytearray(png())
    position %= len(data)
    data[position] ^= flip
    path = tmp_path_factory.mktemp("flip") / "a.png"
    path.write_bytes(bytes(data))
    assert (our_verdict(path) is None) == (pillow_verdict(path) is None)


@pytest.mark.parametrize("cut", [9, 20, 40, -13, -5])
def test_truncated_pngs_are_refused(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(png()[:cut])
    with pytest.raises(ValueError, match="not a valid image"):
        verify_image_file(path)


def test_header_and_data_are_required(tmp_path: Path) -> None:
    data = png()
    ihdr_end = 8 + 25
    no_data = data[:ihdr_end] + chunk(b"IEND", b"")
    bad_depth = data[:8] + chunk(b"IHDR", data[16:24] + bytes([3, 2, 0, 0, 0])) + data[ihdr_end:]
    for name, content in (("no-data", no_data), ("depth", bad_depth)):
        path = tmp_path / f"{name}.png"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not a valid image"):
            verify_image_file(path)
        assert pillow_verdict(path) is None


def test_a_large_chunk_is_read_in_pieces(tmp_path: Path) -> None:
    data = png()
    padded = data[:-12] + chunk(b"pdDg", bytes(24 * 1024 * 1024)) + data[-12:]
    path = tmp_path / "big.png"
    path.write_bytes(padded)
    tracemalloc.start()
    try:
        assert verify_image_file(path) == ("PNG", 12, 7)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
