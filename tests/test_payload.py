"""Pure payload building: flag parsing, field checks, body assembly and exact encoding."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import image_bytes, write_image
from volccli.errors import InputError
from volccli.images import ImageInput, ImageLimits, load_image
from volccli.kinds import CALL, CONTROLNET, EDIT, OUTPAINT, PRODUCT_STYLE, TXT2IMG
from volccli.payload import (
    Control,
    ImageRef,
    Inputs,
    aspect_ratios,
    build_body,
    check_field,
    describe_body,
    encode_body,
    field_values,
    parse_control,
    parse_set,
    preview_body,
    request_identity,
)


def local(path: Path) -> ImageInput:
    return load_image(str(path), "IMAGE", ImageLimits(), read_stdin=lambda: b"")


def raw_input(path: Path, data: bytes) -> ImageInput:
    """An input over arbitrary bytes (encoding does not care whether they are an image)."""
    path.write_bytes(data)
    return ImageInput(
        label=str(path),
        flag="IMAGE",
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def url(address: str) -> ImageInput:
    return ImageInput(label=address, flag="IMAGE", url=address)


# --- parse_set ----------------------------------------------------------------------------


def test_parse_set_types_values_as_json_else_string() -> None:
    got = parse_set(
        [
            "scale=0.7",
            "steps=30",
            "use_sr=false",
            "name=fox",
            'obj={"a": [1, 2]}',
            "logo_info.add_logo=true",
            "prompt=a=b",
            "empty=",
            'quoted="12"',
        ]
    )
    assert got == {
        "scale": 0.7,
        "steps": 30,
        "use_sr": False,
        "name": "fox",
        "obj": {"a": [1, 2]},
        "logo_info.add_logo": True,
        "prompt": "a=b",
        "empty": "",
        "quoted": "12",
    }
    assert isinstance(got["steps"], int)


@pytest.mark.parametrize("item", ["noequals", "=1", "1abc=2", "a..b=1", "a b=1", ".a=1", "a.=1"])
def test_parse_set_refuses_malformed_keys(item: str) -> None:
    with pytest.raises(InputError) as info:
        parse_set([item])
    assert "--set" in info.value.message
    assert "key=VALUE" in info.value.message


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"a": Infinity}'])
def test_parse_set_refuses_non_finite_numbers(raw: str) -> None:
    with pytest.raises(InputError) as info:
        parse_set([f"scale={raw}"])
    assert "not JSON numbers" in info.value.message
    if '"' not in raw:
        assert parse_set([f'scale="{raw}"']) == {"scale": raw}  # quoted, it is a string


# --- parse_control ------------------------------------------------------------------------


def _loader(seen: list[tuple[str, str]]) -> Any:
    def load(source: str, flag: str) -> ImageInput:
        seen.append((source, flag))
        return ImageInput(label=source, flag=flag, url=source if "://" in source else "")

    return load


@pytest.mark.parametrize(
    ("spec", "ctype", "source", "strength"),
    [
        ("canny:edges.png", "canny", "edges.png", 0.6),
        ("depth:d.png:0.4", "depth", "d.png", 0.4),
        ("POSE:p.png:1", "pose", "p.png", 1.0),
        ("pose:https://example.com/p.png:0.8", "pose", "https://example.com/p.png", 0.8),
        ("canny:https://example.com:8080/e.png", "canny", "https://example.com:8080/e.png", 0.6),
        (
            "depth:data:image/png;base64,iVBORw0KGgo=",
            "depth",
            "data:image/png;base64,iVBORw0KGgo=",
            0.6,
        ),
    ],
)
def test_parse_control(spec: str, ctype: str, source: str, strength: float) -> None:
    seen: list[tuple[str, str]] = []
    control = parse_control(spec, _loader(seen))
    assert (control.type, control.strength) == (ctype, strength)
    assert seen == [(source, "--control")]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("sketch:a.png", ["sketch", "canny, depth, pose"]),
        ("canny:a.png:0", ["strength 0", "(0, 1]"]),
        ("canny:a.png:1.5", ["strength 1.5", "(0, 1]"]),
        ("canny:a.png:-0.2", ["strength -0.2", "(0, 1]"]),
        ("canny", ["TYPE:IMAGE[:STRENGTH]"]),
        ("canny:", ["TYPE:IMAGE[:STRENGTH]"]),
        ("canny:edges.png:abc", ["strength 'abc' is not a number", "canny:edges.png:0.6"]),
        ("depth:d.JPG:0,6", ["strength '0,6' is not a number"]),
        ("pose:p.png:", ["strength '' is not a number"]),
    ],
)
def test_parse_control_refuses(spec: str, words: list[str]) -> None:
    seen: list[tuple[str, str]] = []
    with pytest.raises(InputError) as info:
        parse_control(spec, _loader(seen))
    assert "--control" in info.value.message
    for word in words:
        assert word in f"{info.value.message} {info.value.hint}"
    assert seen == []  # nothing loaded for a bad spec


@pytest.mark.parametrize(
    ("spec", "ctype", "strength"),
    [
        ("sketch:a.png", "sketch", 0.6),
        ("canny:a.png:0", "canny", 0.0),
        ("depth:a.png:1.5", "depth", 1.5),
    ],
)
def test_parse_control_without_validation_sends_unconfirmed_types_and_strengths(
    spec: str, ctype: str, strength: float
) -> None:
    # The type list and the strength range are unconfirmed: --no-validate lets them through.
    with pytest.raises(InputError) as info:
        parse_control(spec, _loader([]))
    assert "--no-validate" in info.value.hint
    control = parse_control(spec, _loader([]), validate=False)
    assert (control.type, control.strength) == (ctype, strength)


@pytest.mark.parametrize("spec", ["canny:a.png:nan", "canny:a.png:inf", ":a.png"])
def test_parse_control_refuses_even_without_validation(spec: str) -> None:
    with pytest.raises(InputError, match="--control"):
        parse_control(spec, _loader([]), validate=False)


# --- check_field / field_values --------------------------------------------------------------


def test_check_field_maps_choice_names_to_wire_values() -> None:
    position = TXT2IMG.field("logo_info.position")
    assert check_field(position, "top-left", validate=True) == 2
    assert check_field(position, 3, validate=True) == 3  # already a wire value
    with pytest.raises(InputError) as info:
        check_field(position, "middle", validate=True)
    assert "--watermark-position" in info.value.message
    assert "bottom-right" in info.value.message
    assert check_field(position, "middle", validate=False) == "middle"


def test_check_field_ranges_name_the_flag_and_the_range() -> None:
    width = TXT2IMG.field("width")
    assert check_field(width, 768, validate=True) == 768
    with pytest.raises(InputError) as info:
        check_field(width, 769, validate=True)
    assert info.value.message == "--width 769 is outside [256, 768]"
    assert "--no-validate" in info.value.hint  # an unconfirmed bound can be skipped
    assert check_field(width, 769, validate=False) == 769
    opacity = TXT2IMG.field("logo_info.opacity")  # an official bound
    with pytest.raises(InputError) as info:
        check_field(opacity, 1.5, validate=True)
    assert "--watermark-opacity" in info.value.message
    assert "--no-validate" not in info.value.hint
    side = OUTPAINT.field("top")
    with pytest.raises(InputError):
        check_field(side, 0.0, validate=True)  # (0, 1]: zero is out
    assert check_field(side, 1.0, validate=True) == 1.0


def test_field_values_adds_documented_defaults_only() -> None:
    values = field_values(TXT2IMG, {"prompt": "fox", "width": 640}, validate=True)
    assert values == {
        "prompt": "fox",
        "model_version": "general_v1.4",
        "width": 640,
        "height": 512,
        "scale": 3.0,
        "ddim_steps": 25,
        "use_rephraser": True,
        "use_predict_tags": True,
        "seed": -1,
        "return_url": False,
    }
    # CLI-only options are checked but get no default
    outpaint = field_values(OUTPAINT, {"expand": 0.5}, validate=True)
    assert outpaint["expand"] == 0.5 and "aspect" not in outpaint
    with pytest.raises(InputError):
        field_values(OUTPAINT, {"expand": 2.0}, validate=True)


# --- build_body ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "base", "where"),
    [
        ({"prompt": "a\ud800b"}, {}, "prompt holds a lone UTF-16 surrogate"),
        ({}, {"extra": ["ok", "\udfff"]}, "extra[1] holds a lone UTF-16 surrogate"),
        ({"logo_info": {"\ud83d": 1}}, {}, "a key of logo_info holds a lone UTF-16 surrogate"),
    ],
)
def test_text_that_utf8_cannot_carry_is_refused_naming_where_it_is(
    overrides: dict[str, Any], base: dict[str, Any], where: str
) -> None:
    values = field_values(TXT2IMG, {"prompt": "fox"}, validate=True)
    with pytest.raises(InputError) as info:
        build_body(TXT2IMG, TXT2IMG.req_key, values, Inputs(), overrides=overrides, base=base)
    assert where in info.value.message
    # A whole pair, as JSON decodes it (--set, --body), is one character, and goes through.
    emoji = json.loads('"\\ud83d\\ude00"')
    paired = build_body(TXT2IMG, TXT2IMG.req_key, values, Inputs(), overrides={"prompt": emoji})
    assert emoji.encode() in bytes(encode_body(paired).data)


def test_txt2img_body_nests_watermark_and_applies_set_last() -> None:
    given = {
        "prompt": "fox",
        "logo_info.add_logo": True,
        "logo_info.position": "top-right",
        "logo_info.opacity": 0.4,
    }
    values = field_values(TXT2IMG, given, validate=True)
    body = build_body(
        TXT2IMG,
        TXT2IMG.req_key,
        values,
        Inputs(),
        overrides={"scale": 9, "logo_info.language": 1, "extra.deep.key": "v"},
        base={"prompt": "from body", "only_in_base": 1, "req_key": "ignored"},
    )
    assert body["req_key"] == TXT2IMG.req_key
    assert body["prompt"] == "fox"  # flags win over --body
    assert body["only_in_base"] == 1
    assert body["scale"] == 9  # --set wins over flags
    assert body["logo_info"] == {"add_logo": True, "position": 3, "opacity": 0.4, "language": 1}
    assert body["extra"] == {"deep": {"key": "v"}}


def test_edit_local_goes_to_base64_and_url_to_image_urls(tmp_path: Path) -> None:
    image = local(write_image(tmp_path / "a.png", 40, 30))
    body = build_body(EDIT, EDIT.req_key, {"prompt": "p"}, Inputs(images={"image": [image]}))
    assert body["binary_data_base64"] == [ImageRef(image)] and "image_urls" not in body
    remote = url("https://example.com/a.png")
    body = build_body(EDIT, EDIT.req_key, {"prompt": "p"}, Inputs(images={"image": [remote]}))
    assert body["image_urls"] == ["https://example.com/a.png"]
    assert "binary_data_base64" not in body


def test_local_files_and_urls_cannot_share_the_arrays(tmp_path: Path) -> None:
    image = local(write_image(tmp_path / "a.png", 40, 30))
    inputs = Inputs(images={"image": [image, url("https://example.com/b.png")]})
    with pytest.raises(InputError, match="cannot be mixed"):
        build_body(CALL, "jimeng_i2i_v30", {}, inputs)


def test_product_style_references_local_files_by_index(tmp_path: Path) -> None:
    product = local(write_image(tmp_path / "p.png", 40, 30))
    mask = local(write_image(tmp_path / "m.png", 40, 30))
    light = local(write_image(tmp_path / "l.png", 40, 30))
    inputs = Inputs(
        images={
            "product": [product],
            "ref": [url("https://example.com/ref.jpg")],
            "mask": [mask],
            "light": [light],
        }
    )
    values = field_values(
        PRODUCT_STYLE,
        {"composition": "auto", "light_position": "Top Light", "positive_prompt": "marble"},
        validate=True,
    )
    body = build_body(PRODUCT_STYLE, PRODUCT_STYLE.req_key, values, inputs)
    assert body["product_image_input"] == "uri://binary_data?index=0"
    assert body["ref_image_input"] == "https://example.com/ref.jpg"
    assert body["mask_image_input"] == "uri://binary_data?index=1"
    assert body["light_image_input"] == "uri://binary_data?index=2"
    assert body["binary_data_base64"] == [ImageRef(product), ImageRef(mask), ImageRef(light)]
    assert body["ref_switch"] is True
    assert body["mask_image_switch"] is True
    assert body["upload_light_switch"] is True
    assert body["auto_composition_switch"] is True
    assert "manual_composition_switch" not in body
    assert body["preset_light_switch"] is True
    assert body["light_position"] == "Top Light"
    assert "composition" not in body  # a CLI-only option
    manual = field_values(PRODUCT_STYLE, {"composition": "manual"}, validate=True)
    body = build_body(
        PRODUCT_STYLE,
        PRODUCT_STYLE.req_key,
        manual,
        Inputs(
            images={
                "product": [url("https://example.com/p.png")],
                "ref": [url("https://example.com/r.png")],
            }
        ),
    )
    assert body["manual_composition_switch"] is True and "binary_data_base64" not in body
    assert body["product_image_input"] == "https://example.com/p.png"


def test_an_explicit_switch_is_not_overridden(tmp_path: Path) -> None:
    values = field_values(
        PRODUCT_STYLE,
        {"light_position": "Left Light", "preset_light_switch": False, "ref_switch": False},
        validate=True,
    )
    body = build_body(
        PRODUCT_STYLE,
        PRODUCT_STYLE.req_key,
        values,
        Inputs(
            images={
                "product": [url("https://example.com/p.png")],
                "ref": [url("https://example.com/r.png")],
            }
        ),
    )
    assert body["preset_light_switch"] is False
    assert body["ref_switch"] is False


def test_controlnet_args_follow_the_controls(tmp_path: Path) -> None:
    a = local(write_image(tmp_path / "a.png", 40, 30))
    b = local(write_image(tmp_path / "b.png", 40, 30, colour=(1, 2, 3)))
    controls = [Control("canny", a), Control("depth", b, 0.4), Control("pose", a, 1.0)]
    values = field_values(CONTROLNET, {"prompt": "robot"}, validate=True)
    body = build_body(CONTROLNET, CONTROLNET.req_key, values, Inputs(controls=controls))
    assert body["controlnet_args"] == [
        {"type": "canny", "binary_data_index": 0, "strength": 0.6},
        {"type": "depth", "binary_data_index": 1, "strength": 0.4},
        {"type": "pose", "binary_data_index": 2, "strength": 1.0},
    ]
    assert body["binary_data_base64"] == [ImageRef(a), ImageRef(b), ImageRef(a)]


# --- outpaint -----------------------------------------------------------------------------


def _outpaint(
    tmp_path: Path,
    given: dict[str, Any],
    size: tuple[int, int] = (200, 100),
    mask: tuple[int, int] | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    image = local(write_image(tmp_path / "in.png", *size))
    images = {"image": [image]}
    if mask is not None:
        images["mask"] = [local(write_image(tmp_path / "mask.png", *mask, colour=(255, 255, 255)))]
    values = field_values(OUTPAINT, given, validate=validate)
    return build_body(OUTPAINT, OUTPAINT.req_key, values, Inputs(images=images), validate=validate)


@pytest.mark.parametrize(
    ("field", "sent"),
    [
        ("prompt", ["prompt"]),
        ("custom_prompt", ["custom_prompt"]),
        ("both", ["prompt", "custom_prompt"]),
        (None, ["prompt", "custom_prompt"]),
    ],
)
def test_outpaint_prompt_field(tmp_path: Path, field: str | None, sent: list[str]) -> None:
    body = _outpaint(tmp_path, {"prompt": "garden", "prompt_field": field, "top": 0.2})
    assert [name for name in ("prompt", "custom_prompt") if name in body] == sent
    assert all(body[name] == "garden" for name in sent)
    assert "prompt_field" not in body


def test_outpaint_without_prompt_sends_no_prompt_field(tmp_path: Path) -> None:
    body = _outpaint(tmp_path, {"left": 0.5})
    assert "prompt" not in body and "custom_prompt" not in body
    assert body["left"] == 0.5
    assert not {"top", "bottom", "right"} & set(body)


def test_outpaint_expand_then_explicit_sides(tmp_path: Path) -> None:
    body = _outpaint(tmp_path, {"expand": 0.25, "top": 0.5})
    assert (body["top"], body["bottom"], body["left"], body["right"]) == (0.5, 0.25, 0.25, 0.25)
    assert "expand" not in body


def test_outpaint_aspect_grows_around_the_centre(tmp_path: Path) -> None:
    body = _outpaint(tmp_path, {"aspect": "16:9"}, size=(300, 300))
    assert body["left"] == body["right"] == pytest.approx(0.3889, abs=1e-4)
    assert "top" not in body and "bottom" not in body
    width = 300 * (1 + body["left"] + body["right"])
    assert width / 300 == pytest.approx(16 / 9, rel=1e-3)


@pytest.mark.parametrize(
    ("aspect", "size", "expected"),
    [
        ("16:9", (300, 300), {"left": 0.3889, "right": 0.3889}),
        ("9:16", (300, 300), {"top": 0.3889, "bottom": 0.3889}),
        ("2:1", (100, 100), {"left": 0.5, "right": 0.5}),
        ("4:3", (400, 200), {"top": 0.25, "bottom": 0.25}),
    ],
)
def test_aspect_ratios(aspect: str, size: tuple[int, int], expected: dict[str, float]) -> None:
    got = aspect_ratios(aspect, *size)
    assert got == pytest.approx(expected, abs=1e-4)
    width, height = size
    new_w = width * (1 + got.get("left", 0) + got.get("right", 0))
    new_h = height * (1 + got.get("top", 0) + got.get("bottom", 0))
    w, h = (float(x) for x in aspect.split(":"))
    assert new_w / new_h == pytest.approx(w / h, rel=1e-3)


@pytest.mark.parametrize("aspect", ["16-9", "abc", "0:1", "1:0", "", "1:1"])
def test_aspect_refuses(aspect: str) -> None:
    with pytest.raises(InputError) as info:
        aspect_ratios(aspect, 300, 300)
    assert "--aspect" in info.value.message


def test_aspect_beyond_one_side_ratio_is_refused() -> None:
    with pytest.raises(InputError, match="above the 1x limit"):
        aspect_ratios("1x2", 200, 100)  # each of top and bottom would grow 1.5x


def test_aspect_beyond_the_unconfirmed_limit_is_sent_without_validation(tmp_path: Path) -> None:
    assert aspect_ratios("1x2", 200, 100, limit=None) == {"top": 1.5, "bottom": 1.5}
    with pytest.raises(InputError) as info:
        _outpaint(tmp_path, {"aspect": "1:2"})
    assert "--no-validate" in info.value.hint
    body = _outpaint(tmp_path, {"aspect": "1:2"}, validate=False)
    assert (body["top"], body["bottom"]) == (1.5, 1.5)


@pytest.mark.parametrize("extra", [{"top": 0.2}, {"expand": 0.3}])
def test_outpaint_aspect_is_not_combined_with_side_ratios(
    tmp_path: Path, extra: dict[str, float]
) -> None:
    with pytest.raises(InputError, match="--aspect sets the side ratios itself"):
        _outpaint(tmp_path, {"aspect": "16:9", **extra})


def test_outpaint_needs_an_extent(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs an extent"):
        _outpaint(tmp_path, {"prompt": "x"})


def test_outpaint_canvas_mode(tmp_path: Path) -> None:
    body = _outpaint(tmp_path, {"prompt": "x"}, size=(120, 80), mask=(120, 80))
    assert len(body["binary_data_base64"]) == 2
    assert not {"top", "bottom", "left", "right"} & set(body)
    with pytest.raises(InputError) as info:
        _outpaint(tmp_path, {}, size=(120, 80), mask=(100, 80))
    assert "--mask is 100x80" in info.value.message and "120x80" in info.value.message
    with pytest.raises(InputError, match="cannot be combined"):
        _outpaint(tmp_path, {"top": 0.2}, size=(120, 80), mask=(120, 80))


def test_outpaint_aspect_needs_a_local_image() -> None:
    values = field_values(OUTPAINT, {"aspect": "16:9"}, validate=True)
    inputs = Inputs(images={"image": [url("https://example.com/a.png")]})
    with pytest.raises(InputError, match="--aspect needs the image size"):
        build_body(OUTPAINT, OUTPAINT.req_key, values, inputs)


# --- encoding -----------------------------------------------------------------------------


def _expected_bytes(body: dict[str, Any]) -> bytes:
    """The reference encoding: every image replaced by base64.b64encode of its bytes."""

    def plain(value: Any) -> Any:
        if isinstance(value, ImageRef):
            image = value.image
            data = image.data if image.data is not None else image.path.read_bytes()  # type: ignore[union-attr]
            return base64.b64encode(data).decode()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return json.dumps(plain(body), ensure_ascii=False, separators=(",", ":")).encode()


def test_encode_body_without_images_is_compact_utf8() -> None:
    body = {"req_key": "k", "prompt": '一只猫 "quoted" \\ \n', "scale": 0.5, "nested": {"a": [1]}}
    encoded = encode_body(body)
    assert (
        encoded.data == b'{"req_key":"k","prompt":"\xe4\xb8\x80\xe5\x8f\xaa\xe7\x8c\xab '
        b'\\"quoted\\" \\\\ \\n","scale":0.5,"nested":{"a":[1]}}'
    )
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    assert encoded.stream() == encoded.data


@pytest.mark.parametrize(
    "sizes",
    [
        [1],
        [2, 3, 4],
        [786_431, 786_432, 786_433],  # around the 3*256 KiB chunk
        [2 * 786_432 + 1, 5],
    ],
)
def test_encode_body_streams_base64_equal_to_b64encode(tmp_path: Path, sizes: list[int]) -> None:
    images = [raw_input(tmp_path / f"f{n}.bin", os.urandom(size)) for n, size in enumerate(sizes)]
    in_memory = ImageInput(
        label="stdin",
        flag="IMAGE",
        data=b"\x00\xff" * 7,
        sha256=hashlib.sha256(b"\x00\xff" * 7).hexdigest(),
        size=14,
    )
    body = {
        "req_key": "k",
        "binary_data_base64": [ImageRef(image) for image in images],
        "prompt": "前 @@ after",
        "ref": {"deep": [ImageRef(in_memory)]},
        "tail": True,
    }
    encoded = encode_body(body)
    expected = _expected_bytes(body)
    assert bytes(encoded.data) == expected
    assert encoded.sha256 == hashlib.sha256(expected).hexdigest()
    assert len(encoded) == len(expected)
    stream = encoded.stream()
    streamed = stream if isinstance(stream, bytes) else b"".join(iter(stream))
    assert streamed == expected
    for image in images:
        assert image.encoded_length == len(base64.b64encode(image.path.read_bytes()))  # type: ignore[union-attr]


def test_encode_body_of_a_real_image_matches_the_file(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.jpg", 64, 48, "JPEG")
    image = local(path)
    encoded = encode_body({"req_key": "k", "binary_data_base64": [ImageRef(image)]})
    sent = json.loads(bytes(encoded.data))
    assert sent["binary_data_base64"] == [base64.b64encode(path.read_bytes()).decode()]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"req_key": "k", "scale": float("nan")}, "scale"),
        ({"req_key": "k", "logo_info": {"opacity": float("inf")}}, "logo_info.opacity"),
        (
            {"req_key": "k", "args": [{"strength": 1.0}, {"strength": -float("inf")}]},
            "args[1].strength",
        ),
    ],
)
def test_encode_body_refuses_numbers_json_cannot_carry(body: dict[str, Any], where: str) -> None:
    with pytest.raises(InputError) as info:
        encode_body(body)
    assert info.value.message == f"{where} is not a finite number, which JSON cannot carry"


def test_a_file_changed_after_the_check_is_refused(tmp_path: Path) -> None:
    image = raw_input(tmp_path / "a.bin", b"x" * 3000)
    (tmp_path / "a.bin").write_bytes(b"y" * 3000)
    with pytest.raises(InputError, match="changed while it was being sent"):
        encode_body({"req_key": "k", "binary_data_base64": [ImageRef(image)]})


def test_describe_and_preview_hide_image_data(tmp_path: Path) -> None:
    data = image_bytes(32, 32)
    image = raw_input(tmp_path / "a.png", data)
    body = {"req_key": "k", "binary_data_base64": [ImageRef(image)], "prompt": "p"}
    described = describe_body(body)
    assert described["binary_data_base64"] == [
        {
            "sha256": hashlib.sha256(data).hexdigest(),
            "source": str(tmp_path / "a.png"),
            "bytes": len(data),
        }
    ]
    preview = preview_body(body)
    b64 = base64.b64encode(data).decode()
    assert b64 not in preview and b64 not in json.dumps(described)
    assert json.loads(preview)["binary_data_base64"][0].startswith("<base64 of ")


# --- request identity ---------------------------------------------------------------------


def test_request_identity_is_stable_and_content_addressed(tmp_path: Path) -> None:
    data = image_bytes(16, 16)
    one = raw_input(tmp_path / "one.png", data)
    two = raw_input(tmp_path / "two.png", data)  # same bytes, other path
    other = raw_input(tmp_path / "other.png", image_bytes(16, 16, colour=(0, 0, 0)))
    body = {"req_key": "k", "prompt": "p", "seed": -1, "binary_data_base64": [ImageRef(one)]}
    reordered = {"binary_data_base64": [ImageRef(two)], "seed": -1, "prompt": "p", "req_key": "k"}
    identity = request_identity(body, extra={"index": 0})
    assert identity == request_identity(body, extra={"index": 0})
    assert identity == request_identity(reordered, extra={"index": 0})
    assert len(identity) == 64 and int(identity, 16) >= 0
    assert identity != request_identity(body, extra={"index": 1})
    assert identity != request_identity({**body, "prompt": "q"}, extra={"index": 0})
    assert identity != request_identity(
        {**body, "binary_data_base64": [ImageRef(other)]}, extra={"index": 0}
    )
    # the documented recipe: canonical JSON of the body with images as their hashes
    canonical = json.dumps(
        {"body": {**body, "binary_data_base64": [{"sha256": one.sha256}]}, "index": 0},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    assert identity == hashlib.sha256(canonical.encode()).hexdigest()
