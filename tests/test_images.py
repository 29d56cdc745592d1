"""Input images: every source, the limits, conversion, --fit, and damaged files."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import image_bytes, noise_image, padded_png, png_header_only, write_image
from volccli.errors import ExitCode, InputError
from volccli.images import (
    DEFAULT_MAX_BYTES,
    ImageInput,
    ImageLimits,
    load_image,
    resized_like,
    sniff_extension,
    verify_image_file,
)

LIMITS = ImageLimits()


def load(source: str | Path, limits: ImageLimits = LIMITS, stdin: bytes = b"") -> ImageInput:
    return load_image(str(source), "IMAGE", limits, read_stdin=lambda: stdin)


def refused(source: str | Path, limits: ImageLimits = LIMITS, stdin: bytes = b"") -> InputError:
    with pytest.raises(InputError) as info:
        load(source, limits, stdin)
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.message.startswith("IMAGE")  # names the argument it came from
    assert info.value.hint
    return info.value


def all_bytes(image: ImageInput) -> bytes:
    return b"".join(image.chunks(3 * 1024))


# --- sources ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_local_file_is_checked_and_left_on_disk(tmp_path: Path, fmt: str) -> None:
    path = write_image(tmp_path / f"in.{fmt.lower()}", 320, 200, fmt)
    image = load(path)
    data = path.read_bytes()
    assert (image.format, image.width, image.height) == (fmt, 320, 200)
    assert image.path == path and image.data is None and image.url == ""
    assert image.size == len(data)
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert all_bytes(image) == data
    assert image.notes == []
    assert image.describe() == {
        "source": str(path),
        "sha256": image.sha256,
        "bytes": len(data),
        "width": 320,
        "height": 200,
        "format": fmt,
    }


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    write_image(tmp_path / "rows" / "a.png", 50, 50)
    image = load_image("a.png", "IMAGE", LIMITS, read_stdin=bytes, base_dir=tmp_path / "rows")
    assert image.path == tmp_path / "rows" / "a.png"


@pytest.mark.parametrize("url", ["http://example.com/a.png", "HTTPS://example.com/a?b=1"])
def test_urls_pass_through_unread(url: str) -> None:
    image = load(url)
    assert image.url == url and image.path is None and image.data is None
    assert image.describe() == {"source": url}


def test_stdin_and_data_uris_are_read_into_memory() -> None:
    data = image_bytes(64, 32)
    from_stdin = load("-", stdin=data)
    assert from_stdin.data == data and from_stdin.label == "stdin"
    assert (from_stdin.width, from_stdin.height) == (64, 32)
    assert from_stdin.sha256 == hashlib.sha256(data).hexdigest()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    from_uri = load(uri)
    assert from_uri.data == data and from_uri.label == "data: URI"
    # As `base64` writes it (76 columns), and with the scheme in capitals.
    encoded = base64.encodebytes(data).decode()
    assert "\n" in encoded.strip()
    assert load("DATA:image/png;BASE64," + encoded).data == data


def test_an_endless_stream_is_read_only_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import volccli.images

    monkeypatch.setattr(volccli.images, "MAX_STREAM_BYTES", 64 * 1024)
    limits = ImageLimits(max_bytes=1024)
    error = refused("/dev/zero", limits)  # returns: no endless read into memory
    assert "/dev/zero goes on past 64.0 KB" in error.message
    assert "stdin goes on past" in refused("-", limits, stdin=b"\0" * (65 * 1024)).message
    assert load("-", limits, stdin=image_bytes(8, 8)).width == 8


def test_a_url_with_a_password_is_refused_without_echoing_it() -> None:
    error = refused("https://alice:hunter2@example.com/a.png")
    assert "carries a user or password before '@'" in error.message
    assert "hunter2" not in f"{error.message} {error.hint}"


def test_the_input_stem_of_files_and_urls() -> None:
    assert load("https://example.com/shots/photo%20one.png?sig=1").stem == "photo one"
    assert load("-", stdin=image_bytes(8, 8)).stem == ""


def test_a_pipe_is_read_whole_though_it_has_no_size(tmp_path: Path) -> None:
    data = image_bytes(48, 40)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,))
    writer.start()
    image = load(fifo)
    writer.join()
    assert image.data == data and (image.width, image.height) == (48, 40)
    os.unlink(fifo)
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(b"",))
    writer.start()
    assert "is empty" in refused(fifo).message
    writer.join()


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("file:///etc/passwd", ["file://", "http(s)"]),
        ("ftp://example.com/a.png", ["ftp://", "http(s)"]),
        ("s3://bucket/a.png", ["s3://"]),
        ("https:///a.png", ["has no host"]),
        ("data:image/png,rawdata", ["malformed data: URI"]),
        ("data:image/png;base64", ["malformed data: URI"]),
        ("data:image/png;base64,@@not base64@@", ["base64 is invalid"]),
        ("data:image/png;base64,", ["data: URI is empty"]),
        ("data:image/png;base64, \n", ["data: URI is empty"]),
        ("", ["is empty"]),
    ],
)
def test_unusable_sources(source: str, words: list[str]) -> None:
    error = refused(source)
    for word in words:
        assert word in f"{error.message}; {error.hint}"


def test_empty_stdin() -> None:
    assert "stdin is empty" in refused("-", stdin=b"").message


# --- files that are not images ------------------------------------------------------------


def test_missing_file_folder_and_empty_file(tmp_path: Path) -> None:
    assert "no such file" in refused(tmp_path / "missing.png").message
    assert "is a folder" in refused(tmp_path).message
    (tmp_path / "empty.png").write_bytes(b"")
    assert "is empty" in refused(tmp_path / "empty.png").message


def test_text_named_png(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("just some text\n")
    assert "is text" in refused(tmp_path / "notes.png").message
    (tmp_path / "blob.png").write_bytes(bytes(range(256)) * 4)
    assert "not an image" in refused(tmp_path / "blob.png").message


@pytest.mark.parametrize("cut", [12, 30, 200])
def test_truncated_png(tmp_path: Path, cut: int) -> None:
    data = noise_image(64, 64)
    (tmp_path / "cut.png").write_bytes(data[:-cut])
    error = refused(tmp_path / "cut.png")
    assert "truncated or damaged" in error.message
    # the same bytes from stdin are caught too
    assert "truncated" in refused("-", stdin=data[:-cut]).message


def test_png_with_a_bad_checksum(tmp_path: Path) -> None:
    data = bytearray(noise_image(64, 64))
    data[100] ^= 0xFF  # inside the IDAT chunk
    (tmp_path / "crc.png").write_bytes(bytes(data))
    assert "damaged" in refused(tmp_path / "crc.png").message


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = noise_image(64, 64, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert "no JPEG end marker" in refused(tmp_path / "cut.jpg").message
    assert "no JPEG end marker" in refused("-", stdin=data[: len(data) // 2]).message


# --- limits -------------------------------------------------------------------------------


def test_a_file_over_the_default_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(padded_png(64, 64, DEFAULT_MAX_BYTES + 1000))
    error = refused(path)
    assert "above the 4.7 MB limit" in error.message
    assert "--fit" in error.hint and "--max-image-bytes" in error.hint


def test_dimensions_over_the_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "wide.png", 4100, 1400)
    error = refused(path)
    assert "4100x1400" in error.message and "4096px limit" in error.message
    assert "--max-image-side" in error.hint
    assert load(path, ImageLimits(max_side=5000)).width == 4100


@pytest.mark.parametrize("size", [(1000, 100), (100, 310)])
def test_extreme_aspect(tmp_path: Path, size: tuple[int, int]) -> None:
    path = write_image(tmp_path / "strip.png", *size)
    error = refused(path)
    assert "above the 3:1 limit" in error.message
    assert "--max-aspect" in error.hint
    # --fit cannot change an aspect
    assert "3:1" in refused(path, ImageLimits(fit=True)).message
    assert load(path, ImageLimits(max_aspect=10)).width == size[0]


# --- conversion ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "colour", "out_mode"),
    [
        ("WEBP", "RGB", (10, 20, 30), "RGB"),
        ("GIF", "RGB", (10, 20, 30), "RGB"),
        ("BMP", "RGB", (10, 20, 30), "RGB"),
        ("WEBP", "RGBA", (10, 20, 30, 128), "RGBA"),
        ("TIFF", "RGB", (10, 20, 30), "RGB"),
    ],
)
def test_other_formats_become_png_with_a_note(
    tmp_path: Path, fmt: str, mode: str, colour: tuple[int, ...], out_mode: str
) -> None:
    save = {"lossless": True} if fmt == "WEBP" else {}
    path = write_image(
        tmp_path / f"in.{fmt.lower()}", 60, 40, fmt, mode=mode, colour=colour, **save
    )
    image = load(path)
    assert image.format == "PNG" and image.data is not None
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (image.width, image.height) == (60, 40)
    assert image.sha256 == hashlib.sha256(image.data).hexdigest()  # the bytes sent
    assert len(image.notes) == 1 and f"converted {fmt} 60x40" in image.notes[0]
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.mode == out_mode
        assert decoded.getpixel((5, 5)) == colour
    error = refused(path, ImageLimits(convert=False))
    assert f"is {fmt}, not JPEG or PNG" in error.message and "--no-convert" in error.hint


def test_fit_downsizes_to_the_side_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", 2400, 1200)
    image = load(path, ImageLimits(max_side=1000, fit=True))
    assert (image.width, image.height) == (1000, 500)
    assert image.format == "PNG" and image.data is not None
    assert "fitted PNG 2400x1200" in image.notes[0] and "-> PNG 1000x500" in image.notes[0]
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == (1000, 500)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_fit_re_encodes_under_the_byte_limit(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"noise.{fmt.lower()}"
    path.write_bytes(noise_image(500, 400, fmt))
    limit = 60_000
    assert path.stat().st_size > limit
    assert "limit" in refused(path, ImageLimits(max_bytes=limit)).message
    image = load(path, ImageLimits(max_bytes=limit, fit=True))
    assert image.size <= limit and image.data is not None and len(image.data) == image.size
    assert image.format in ("PNG", "JPEG")
    assert image.width / image.height == pytest.approx(500 / 400, rel=0.02)
    verify = load("-", ImageLimits(max_bytes=limit), stdin=image.data)  # meets the limits as is
    assert verify.sha256 == image.sha256 and verify.notes == []


def test_fit_is_a_no_op_for_images_within_the_limits(tmp_path: Path) -> None:
    path = write_image(tmp_path / "ok.png", 200, 100)
    image = load(path, ImageLimits(fit=True))
    assert image.path == path and image.notes == []


def test_fit_refuses_a_byte_limit_no_useful_size_meets(tmp_path: Path) -> None:
    path = write_image(tmp_path / "plain.png", 400, 300)
    error = refused(path, ImageLimits(max_bytes=60, fit=True))  # returns: no endless loop
    assert "cannot be fitted under" in error.message and "--max-image-bytes" in error.hint


def test_sixteen_bit_greys_keep_their_tone_when_converted(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    Image.new("I;16", (300, 200), 32768).save(path)
    image = load(path, ImageLimits(max_side=150, fit=True))
    assert image.data is not None and (image.width, image.height) == (150, 100)
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.convert("L").getpixel((10, 10)) == 128  # half of white, not white


def test_re_encoding_applies_the_exif_rotation_and_keeps_the_colour_profile(
    tmp_path: Path,
) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "sideways.jpg"
    picture = Image.new("RGB", (400, 300), (200, 10, 10))
    exif = picture.getexif()
    exif[0x0112] = 6  # shown turned a quarter: 300x400
    picture.save(path, exif=exif, icc_profile=icc)
    image = load(path, ImageLimits(max_side=200, fit=True))
    assert (image.width, image.height) == (150, 200)
    assert image.data is not None
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == (150, 200)
        assert decoded.info.get("icc_profile") == icc


def test_a_huge_jpeg_is_fitted_from_a_reduced_decode(tmp_path: Path) -> None:
    path = write_image(tmp_path / "huge.jpg", 6000, 4500, "JPEG")
    image = load(path, ImageLimits(fit=True))
    assert (image.width, image.height) == (4096, 3072)
    assert "fitted JPEG 6000x4500" in image.notes[0]


def test_a_mask_resized_like_its_canvas_keeps_hard_edges(tmp_path: Path) -> None:
    mask_path = tmp_path / "mask.png"
    drawn = Image.new("L", (600, 400), 0)
    drawn.paste(255, (150, 100, 450, 300))
    drawn.save(mask_path)
    canvas = load(
        write_image(tmp_path / "canvas.png", 600, 400), ImageLimits(max_side=300, fit=True)
    )
    mask = resized_like(load(mask_path), canvas)
    assert (mask.width, mask.height) == (300, 200) and mask.resized_from == (600, 400)
    assert mask.data is not None and mask.sha256 == hashlib.sha256(mask.data).hexdigest()
    with Image.open(io.BytesIO(mask.data)) as decoded:
        assert decoded.size == (300, 200)
        assert set(decoded.convert("L").tobytes()) == {0, 255}
    assert "resized 600x400 -> 300x200" in mask.notes[-1]


def test_an_animation_note_says_only_its_first_frame_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image = load(path)
    assert "the first of 2 frames" in image.notes[0]


def test_an_aspect_just_over_the_limit_is_not_shown_as_the_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "wide.png", 901, 300)
    assert "aspect 3.003333:1 above the 3:1 limit" in refused(path).message


def test_conversion_that_stays_too_big_needs_fit(tmp_path: Path) -> None:
    path = tmp_path / "noise.bmp"
    path.write_bytes(noise_image(300, 300, "BMP"))
    error = refused(path, ImageLimits(max_bytes=50_000))
    assert "once converted" in error.message and "--fit" in error.hint
    fitted = load(path, ImageLimits(max_bytes=50_000, fit=True))
    assert fitted.size <= 50_000


# --- results ------------------------------------------------------------------------------


def test_sniff_extension() -> None:
    assert sniff_extension(image_bytes(4, 4)[:16]) == ".png"
    assert sniff_extension(image_bytes(4, 4, "JPEG")[:16]) == ".jpg"
    assert sniff_extension(image_bytes(4, 4, "WEBP")[:16]) == ".webp"
    assert sniff_extension(image_bytes(4, 4, "GIF")[:16]) == ".gif"
    assert sniff_extension(b"<html>") == ""


def test_verify_image_file(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", 30, 20)
    assert verify_image_file(good) == ("PNG", 30, 20)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(noise_image(32, 32, "JPEG")[:-10])
    with pytest.raises(ValueError):
        verify_image_file(cut)
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError):
        verify_image_file(tmp_path / "junk.png")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_truncated_files_of_other_formats(tmp_path: Path, fmt: str) -> None:
    data = noise_image(64, 64, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    error = refused(path)
    assert "damaged" in error.message and error.hint == "re-export the image"


def test_a_decompression_bomb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_header_only(20000, 20000))
    error = refused(tmp_path / "bomb.png", ImageLimits(max_side=30000))
    assert "too many to decode safely" in error.message
    assert "too many" in refused("-", stdin=png_header_only(20000, 20000)).message


def test_a_large_image_is_refused_without_a_pillow_warning(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    (tmp_path / "large.png").write_bytes(png_header_only(12000, 10000))
    assert "above the 4096px limit" in refused(tmp_path / "large.png").message
    assert [str(w.message) for w in recwarn] == []
