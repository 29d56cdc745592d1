"""Every generation command end to end against the sandbox on loopback: the exact body the
sandbox received, the image written, --json, -o -, the recipe, --dry-run and both auths."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helpers import (
    Result,
    api_requests,
    b64_summary,
    image_size,
    listing,
    noise_image,
    run_cli,
    sent_bodies,
    write_image,
)
from volccli.recipe import read_embedded, read_recipe
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, Sandbox

TXT2IMG = "high_aes_general_v14"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sb(fresh_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox, reached through the gateway; the working folder is a temp folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    return fresh_sandbox


def run(
    sb: Sandbox,
    *args: object,
    input: str | bytes | None = None,
    env: dict[str, str | None] | None = None,
) -> Result:
    result = run_cli([*args, "--base-url", sb.base_url], input=input, env=env)
    assert "Traceback" not in result.stderr
    return result


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def last_body(sb: Sandbox) -> dict[str, Any]:
    bodies = sent_bodies(sb)
    assert bodies, "the sandbox received nothing"
    return bodies[-1]


def written(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in (".png", ".jpg"))


def file_b64(path: Path) -> str:
    return b64_summary(path.read_bytes())


def dry_run(sb: Sandbox, *args: object, input: str | bytes | None = None) -> dict[str, Any]:
    """The --dry-run --json record; proves nothing was sent and nothing written."""
    before = api_requests(sb)
    here = listing(Path.cwd())
    result = ok(run(sb, *args, "--dry-run", "--json", input=input))
    assert api_requests(sb) == before
    assert listing(Path.cwd()) == here
    (record,) = result.json_lines()
    assert API_KEY not in result.stdout and record["headers"]["Authorization"] == "Bearer ****"
    return record


# --- txt2img ------------------------------------------------------------------------------

WATERMARKED = [
    "--width",
    "640",
    "--height",
    "384",
    "--scale",
    "7.5",
    "--steps",
    "30",
    "--seed",
    "42",
    "--model-version",
    "general_v1.4",
    "--no-rephraser",
    "--no-predict-tags",
    "--watermark",
    "--watermark-position",
    "top-left",
    "--watermark-language",
    "en",
    "--watermark-opacity",
    "0.5",
    "--watermark-text",
    "made by me",
]
WATERMARKED_BODY = {
    "req_key": TXT2IMG,
    "prompt": "a red fox",
    "model_version": "general_v1.4",
    "width": 640,
    "height": 384,
    "scale": 7.5,
    "ddim_steps": 30,
    "use_rephraser": False,
    "use_predict_tags": False,
    "seed": 42,
    "return_url": False,
    "logo_info": {
        "add_logo": True,
        "position": 2,
        "language": 1,
        "opacity": 0.5,
        "logo_text_content": "made by me",
    },
}


def test_txt2img_every_flag_reaches_its_field(sb: Sandbox, tmp_path: Path) -> None:
    result = ok(run(sb, "txt2img", "a red fox", *WATERMARKED, "-o", "out", "--json"))
    assert last_body(sb) == WATERMARKED_BODY
    (line,) = result.json_lines()
    path = Path(line["path"])
    assert path.parent == tmp_path / "out"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert image_size(path) == (640, 384)
    assert line["req_key"] == TXT2IMG and line["seed"] == 42
    assert line["request_id"] == sb.stats()["recent"][-1]["request_id"]
    assert (line["width"], line["height"]) == (640, 384)
    assert line["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(line["elapsed"], float) and line["elapsed"] >= 0
    assert sb.stats()["billed"] == 1
    assert "rephraser_result" not in json.loads(Path(f"{path}.json").read_text())


def test_txt2img_defaults_and_switches_on(sb: Sandbox) -> None:
    ok(run(sb, "txt2img", "a fox", "--seed", "1", "--rephraser", "--predict-tags", "-o", "."))
    assert last_body(sb) == {
        "req_key": TXT2IMG,
        "prompt": "a fox",
        "model_version": "general_v1.4",
        "width": 512,
        "height": 512,
        "scale": 3.0,
        "ddim_steps": 25,
        "use_rephraser": True,
        "use_predict_tags": True,
        "seed": 1,
        "return_url": False,
    }
    (path,) = written(Path.cwd())
    assert image_size(path) == (512, 512)
    recipe, _ = read_recipe(path)
    assert recipe is not None and recipe["rephraser_result"].startswith("a fox")
    assert recipe["predict_tags_result"]


def test_txt2img_set_overrides_and_nests(sb: Sandbox) -> None:
    ok(
        run(
            sb,
            "txt2img",
            "fox",
            "--seed",
            "2",
            "--watermark",
            "--set",
            "scale=9",
            "--set",
            "logo_info.opacity=0.2",
            "--set",
            "extra.nested.key=v",
            "--set",
            "width=256",
            "-o",
            ".",
        )
    )
    body = last_body(sb)
    assert body["scale"] == 9 and isinstance(body["scale"], int)
    assert body["logo_info"] == {"add_logo": True, "opacity": 0.2}
    assert body["extra"] == {"nested": {"key": "v"}}
    (path,) = written(Path.cwd())
    assert image_size(path) == (256, 512)


def test_txt2img_count_three(sb: Sandbox) -> None:
    result = ok(run(sb, "txt2img", "fox", "-n", "3", "-o", "out", "--json"))
    lines = result.json_lines()
    bodies = sent_bodies(sb)
    assert len(lines) == 3 and len(bodies) == 3
    seeds = [body["seed"] for body in bodies]
    assert len(set(seeds)) == 3 and all(seed >= 0 for seed in seeds)
    assert [line["seed"] for line in lines] == seeds
    paths = {line["path"] for line in lines}
    assert len(paths) == 3 and all(Path(p).is_file() for p in paths)
    assert len(written(Path("out"))) == 3
    assert sb.stats()["billed"] == 3


def test_a_fixed_seed_counts_up(sb: Sandbox) -> None:
    ok(run(sb, "txt2img", "fox", "-n", "3", "--seed", "5", "-o", "."))
    assert [body["seed"] for body in sent_bodies(sb)] == [5, 6, 7]


def test_prompt_from_stdin_and_from_a_file(sb: Sandbox, tmp_path: Path) -> None:
    ok(run(sb, "txt2img", "-", "--seed", "1", "-o", ".", input="a fox from stdin\n"))
    assert last_body(sb)["prompt"] == "a fox from stdin"
    (tmp_path / "prompt.txt").write_text("一只红色的猫\n", encoding="utf-8")
    ok(run(sb, "txt2img", "@prompt.txt", "--seed", "1", "-o", "."))
    assert last_body(sb)["prompt"] == "一只红色的猫"
    assert (tmp_path / "txt2img_一只红色的猫_1.png").is_file()
    (tmp_path / "bom.txt").write_text("a fox with a byte-order mark\n", encoding="utf-8-sig")
    ok(run(sb, "txt2img", "@bom.txt", "--seed", "1", "-o", "."))
    assert last_body(sb)["prompt"] == "a fox with a byte-order mark"


def test_a_double_at_sign_is_a_literal_prompt(sb: Sandbox) -> None:
    ok(run(sb, "txt2img", "@@home, a cosy room", "--seed", "1", "-o", "."))
    assert last_body(sb)["prompt"] == "@home, a cosy room"


def test_watermark_position_by_number(sb: Sandbox) -> None:
    ok(run(sb, "txt2img", "fox", "--watermark", "--watermark-position", "2", "-o", "."))
    assert last_body(sb)["logo_info"]["position"] == 2


def test_return_url_results_are_downloaded_without_credentials(sb: Sandbox) -> None:
    result = ok(run(sb, "txt2img", "fox", "--return-url", "--seed", "3", "-o", "out"))
    assert last_body(sb)["return_url"] is True
    path = Path(result.stdout.strip())
    assert path.read_bytes().startswith(PNG_SIGNATURE) and image_size(path) == (512, 512)
    stats = sb.stats()
    assert stats["downloads"] == 1 and stats["images_served"] == 1
    assert stats["downloads_with_credentials"] == 0
    assert "X-Expires" not in path.name


def test_stdout_output(sb: Sandbox, tmp_path: Path) -> None:
    result = ok(run(sb, "txt2img", "fox", "-W", "256", "-H", "320", "-o", "-"))
    assert result.stdout_bytes.startswith(PNG_SIGNATURE)
    assert image_size(result.stdout_bytes) == (256, 320)
    assert listing(tmp_path) == []
    assert read_embedded_bytes(result.stdout_bytes)["body"]["width"] == 256


def test_stdout_output_to_a_terminal_is_refused(sb: Sandbox, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    before = api_requests(sb)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "volccli", "txt2img", "fox", "-o", "-"],
            stdout=follower,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "VOLCCLI_BASE_URL": sb.base_url, "VOLCCLI_API_KEY": API_KEY},
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "volccli: error: -o - would write the image's bytes to the terminal; "
        "redirect them (-o - > image.png) or give a folder with -o"
    )
    assert api_requests(sb) == before
    assert listing(tmp_path) == []


def read_embedded_bytes(data: bytes) -> dict[str, Any]:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".png") as handle:
        handle.write(data)
        handle.flush()
        found = read_embedded(Path(handle.name))
    assert found is not None
    return found


def test_recipe_holds_the_body_and_no_secret(sb: Sandbox) -> None:
    result = ok(run(sb, "txt2img", "a red fox", *WATERMARKED, "-o", "."))
    path = Path(result.stdout.strip())
    sidecar, where = read_recipe(path)
    assert where == f"{path}.json"
    embedded = read_embedded(path)
    for recipe in (sidecar, embedded):
        assert recipe is not None
        assert recipe["body"] == WATERMARKED_BODY
        assert recipe["req_key"] == TXT2IMG and recipe["seed"] == 42
        assert recipe["request_id"] == sb.stats()["recent"][-1]["request_id"]
    assert (
        sidecar is not None
        and sidecar["file"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    for blob in (path.read_bytes(), Path(f"{path}.json").read_bytes()):
        assert API_KEY.encode() not in blob


# --- edit ---------------------------------------------------------------------------------


def test_edit(sb: Sandbox, tmp_path: Path) -> None:
    source = write_image(tmp_path / "photo.png", 300, 200)
    result = ok(
        run(
            sb,
            "edit",
            "photo.png",
            "make it red",
            "--scale",
            "0.7",
            "--negative",
            "blurry",
            "--seed",
            "5",
            "-o",
            "out",
            "--json",
        )
    )
    assert last_body(sb) == {
        "req_key": "byteedit_v2.0",
        "prompt": "make it red",
        "negative_prompt": "blurry",
        "scale": 0.7,
        "seed": 5,
        "return_url": False,
        "binary_data_base64": [file_b64(source)],
    }
    (line,) = result.json_lines()
    path = Path(line["path"])
    assert image_size(path) == (300, 200) and line["req_key"] == "byteedit_v2.0"
    recipe, _ = read_recipe(path)
    assert recipe is not None
    assert recipe["body"]["binary_data_base64"] == [
        {
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "source": str(Path.cwd() / "photo.png"),  # absolute: a rerun works from anywhere
            "bytes": source.stat().st_size,
        }
    ]
    sidecar_text = Path(f"{path}.json").read_text()
    assert base64.b64encode(source.read_bytes()).decode()[:200] not in sidecar_text
    assert recipe["inputs"][0]["width"] == 300
    embedded = read_embedded(path)
    assert embedded is not None and embedded["body"] == recipe["body"]
    assert API_KEY.encode() not in path.read_bytes()


def test_edit_url_passes_through(sb: Sandbox) -> None:
    ok(run(sb, "edit", "https://example.com/a.png", "make it red", "--seed", "1", "-o", "."))
    body = last_body(sb)
    assert body["image_urls"] == ["https://example.com/a.png"]
    assert "binary_data_base64" not in body
    (path,) = written(Path.cwd())
    assert image_size(path) == (1024, 1024)  # the sandbox's size for hosts it never contacts


def test_edit_takes_exactly_one_image(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 50, 50)
    write_image(tmp_path / "b.png", 50, 50)
    result = run(sb, "edit", "a.png", "b.png", "prompt")
    assert result.exit_code == 2 and len(result.stderr_lines) == 1
    assert "unexpected extra argument" in result.stderr.lower()
    assert api_requests(sb) == 0


def test_edit_image_from_stdin(sb: Sandbox, tmp_path: Path) -> None:
    data = write_image(tmp_path / "x.jpg", 120, 90, "JPEG").read_bytes()
    ok(run(sb, "edit", "-", "brighter", "--seed", "1", "-o", "out", input=data))
    assert last_body(sb)["binary_data_base64"] == [b64_summary(data)]
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (120, 90)


# --- outpaint -----------------------------------------------------------------------------

OUTPAINT_DEFAULTS = {
    "req_key": "i2i_outpainting",
    "scale": 7.0,
    "steps": 30,
    "strength": 0.8,
    "max_width": 1920,
    "max_height": 1920,
    "return_url": False,
}


def test_outpaint_ratio_mode(sb: Sandbox, tmp_path: Path) -> None:
    source = write_image(tmp_path / "room.png", 200, 100)
    ok(
        run(
            sb,
            "outpaint",
            "room.png",
            "a garden",
            "--top",
            "0.1",
            "--left",
            "0.2",
            "--seed",
            "3",
            "-o",
            ".",
        )
    )
    assert last_body(sb) == {
        **OUTPAINT_DEFAULTS,
        "prompt": "a garden",
        "custom_prompt": "a garden",
        "top": 0.1,
        "left": 0.2,
        "seed": 3,
        "binary_data_base64": [file_b64(source)],
    }
    assert image_size(tmp_path / "outpaint_a-garden_3.png") == (240, 110)


def test_outpaint_expand(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "room.png", 200, 100)
    ok(run(sb, "outpaint", "room.png", "--expand", "0.25", "--seed", "3", "-o", "out"))
    body = last_body(sb)
    assert [body[side] for side in ("top", "bottom", "left", "right")] == [0.25] * 4
    assert "prompt" not in body and "custom_prompt" not in body
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (300, 150)


def test_outpaint_aspect_grows_around_the_centre(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "square.png", 300, 300)
    ok(run(sb, "outpaint", "square.png", "sea", "--aspect", "16:9", "--seed", "3", "-o", "out"))
    body = last_body(sb)
    assert body["left"] == body["right"] == pytest.approx(0.3889, abs=1e-4)
    assert "top" not in body and "bottom" not in body
    (path,) = written(tmp_path / "out")
    width, height = image_size(path)
    assert (width, height) == (533, 300)
    assert width / height == pytest.approx(16 / 9, rel=0.01)


def test_outpaint_canvas_mode(sb: Sandbox, tmp_path: Path) -> None:
    canvas = write_image(tmp_path / "canvas.png", 240, 120)
    mask = write_image(tmp_path / "mask.png", 240, 120, colour=(255, 255, 255))
    ok(
        run(
            sb,
            "outpaint",
            "canvas.png",
            "more sky",
            "--mask",
            "mask.png",
            "--seed",
            "4",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert body["binary_data_base64"] == [file_b64(canvas), file_b64(mask)]
    assert not {"top", "bottom", "left", "right"} & set(body)
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (240, 120)


def test_a_refused_request_leaves_no_output_folder_it_made(sb: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    for out in ("new/a/b", "kept/new"):
        result = run(sb, "txt2img", "x volccli-fault:50400", "-o", out)
        assert result.exit_code == 4, result.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "kept" / "new").exists()
    assert (tmp_path / "kept").is_dir()  # it was there before: it stays


def test_a_failure_midway_through_n_images_says_how_far_it_got(sb: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "fox_1.png").write_bytes(b"mine")
    result = run(
        sb, "txt2img", "fox", "-n", "3", "--name", "fox_{index}", "--on-exists", "fail", "-o", "out"
    )
    assert result.exit_code == 8
    assert result.stderr_lines == [
        "volccli: warning: txt2img 2/3 failed: 1 image(s) were written, the other 1 were not sent",
        f"volccli: error: {tmp_path / 'out' / 'fox_1.png'} already exists; choose another "
        "--name, or --on-exists suffix|skip|overwrite",
    ]
    assert api_requests(sb) == 1 and (tmp_path / "out" / "fox_1.png").read_bytes() == b"mine"


def test_outpaint_canvas_mode_fits_the_mask_with_its_canvas(sb: Sandbox, tmp_path: Path) -> None:
    # Noise does not compress: only the canvas is over the byte limit.
    (tmp_path / "canvas.png").write_bytes(noise_image(600, 400))
    mask = tmp_path / "mask.png"
    drawn = Image.new("L", (600, 400), 0)
    drawn.paste(255, (150, 100, 450, 300))
    drawn.save(mask)
    result = ok(
        run(
            sb,
            "outpaint",
            "canvas.png",
            "--mask",
            "mask.png",
            "--fit",
            "--max-image-bytes",
            "60000",
        )
    )
    found = re.search(
        r"mask\.png: resized 600x400 -> (\d+)x(\d+) to match the fitted", result.stderr
    )
    assert found, result.stderr
    fitted = (int(found[1]), int(found[2]))
    assert fitted[0] < 600 and f"-> JPEG {fitted[0]}x{fitted[1]}" in result.stderr
    # The sandbox checks that the mask has the canvas's size, as the service does.
    (path,) = [p for p in written(tmp_path) if p.name.startswith("outpaint")]
    assert image_size(path) == fitted
    assert mask.stat().st_size and Image.open(mask).size == (600, 400)  # the file is untouched


@pytest.mark.parametrize(
    ("field", "sent"),
    [
        ("prompt", {"prompt"}),
        ("custom_prompt", {"custom_prompt"}),
        ("both", {"prompt", "custom_prompt"}),
    ],
)
def test_outpaint_prompt_field(sb: Sandbox, tmp_path: Path, field: str, sent: set[str]) -> None:
    write_image(tmp_path / "room.png", 100, 100)
    ok(
        run(
            sb,
            "outpaint",
            "room.png",
            "garden",
            "--right",
            "0.5",
            "--prompt-field",
            field,
            "--seed",
            "1",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert {name for name in ("prompt", "custom_prompt") if name in body} == sent
    assert all(body[name] == "garden" for name in sent)


# --- product-style ------------------------------------------------------------------------


def test_product_style_local_files_are_referenced_by_index(sb: Sandbox, tmp_path: Path) -> None:
    product = write_image(tmp_path / "bottle.png", 400, 200, mode="RGBA", colour=(1, 2, 3, 255))
    ref = write_image(tmp_path / "scene.jpg", 100, 100, "JPEG")
    mask = write_image(tmp_path / "mask.png", 400, 200, colour=(255, 255, 255))
    light = write_image(tmp_path / "light.png", 100, 100, colour=(250, 250, 200))
    ok(
        run(
            sb,
            "product-style",
            "bottle.png",
            "--ref",
            "scene.jpg",
            "--mask",
            "mask.png",
            "--light-map",
            "light.png",
            "--prompt",
            "marble table",
            "--negative",
            "clutter",
            "--longer-side",
            "256",
            "--product-weight",
            "0.85",
            "--product-alpha",
            "--product-safe",
            "--no-mask-invert",
            "--ref-weight",
            "0.75",
            "--ref-end-at",
            "0.5",
            "--product-edge-weight",
            "0.1",
            "--seg-prompt",
            "bottle",
            "--seed",
            "9",
            "-o",
            "out",
        )
    )
    assert last_body(sb) == {
        "req_key": "img2img_e_commerce_style",
        "positive_prompt": "marble table",
        "negative_prompt": "clutter",
        "product_weight": 0.85,
        "product_edge_weight": 0.1,
        "product_alpha_switch": True,
        "product_safe_switch": True,
        "seg_prompt": "bottle",
        "mask_invert_switch": False,
        "ref_weight": 0.75,
        "ref_end_at": 0.5,
        "longer_side": 256,
        "seed": 9,
        "return_url": False,
        "product_image_input": "uri://binary_data?index=0",
        "ref_image_input": "uri://binary_data?index=1",
        "ref_switch": True,
        "mask_image_input": "uri://binary_data?index=2",
        "mask_image_switch": True,
        "light_image_input": "uri://binary_data?index=3",
        "upload_light_switch": True,
        "binary_data_base64": [file_b64(p) for p in (product, ref, mask, light)],
    }
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (256, 128)


def test_product_style_urls_pass_through(sb: Sandbox, tmp_path: Path) -> None:
    product = write_image(tmp_path / "bottle.png", 300, 300)
    ok(
        run(
            sb,
            "product-style",
            "bottle.png",
            "--ref",
            "https://example.com/ref.jpg?x=1&y=2",
            "--longer-side",
            "200",
            "--seed",
            "1",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert body["ref_image_input"] == "https://example.com/ref.jpg?x=1&y=2"
    assert body["product_image_input"] == "uri://binary_data?index=0"
    assert body["binary_data_base64"] == [file_b64(product)]
    ok(
        run(
            sb,
            "product-style",
            "https://example.com/p.png",
            "--ref",
            "https://example.com/r.png",
            "--longer-side",
            "200",
            "--seed",
            "1",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert body["product_image_input"] == "https://example.com/p.png"
    assert body["ref_image_input"] == "https://example.com/r.png"
    assert "binary_data_base64" not in body and "image_urls" not in body


def test_product_style_light_position(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "p.png", 100, 100)
    ok(
        run(
            sb,
            "product-style",
            "p.png",
            "--ref",
            "p.png",
            "--light-position",
            "Top Light",
            "--longer-side",
            "128",
            "--seed",
            "1",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert body["light_position"] == "Top Light" and body["preset_light_switch"] is True


def test_product_style_auto_composition(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "p.png", 100, 100)
    ok(
        run(
            sb,
            "product-style",
            "p.png",
            "--ref",
            "p.png",
            "--composition",
            "auto",
            "--canvas-width",
            "300",
            "--canvas-height",
            "200",
            "--auto-offset-x",
            "50",
            "--auto-offset-y",
            "40",
            "--auto-scale",
            "0.7",
            "--seed",
            "1",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert body["auto_composition_switch"] is True
    assert "manual_composition_switch" not in body and "composition" not in body
    assert (body["canvas_width"], body["canvas_height"]) == (300, 200)
    assert (body["auto_offset_x"], body["auto_offset_y"], body["auto_scale"]) == (50, 40, 0.7)
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (300, 200)


def test_product_style_manual_composition(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "p.png", 100, 100)
    ok(
        run(
            sb,
            "product-style",
            "p.png",
            "--ref",
            "p.png",
            "--composition",
            "manual",
            "--offset-x",
            "10",
            "--offset-y",
            "-20",
            "--crop-product",
            "--longer-side",
            "128",
            "--seed",
            "1",
            "-o",
            "out",
        )
    )
    body = last_body(sb)
    assert body["manual_composition_switch"] is True
    assert "auto_composition_switch" not in body
    assert (body["offset_x"], body["offset_y"], body["crop_prodcut_switch"]) == (10, -20, True)


# --- controlnet ---------------------------------------------------------------------------


def test_controlnet_several_controls(sb: Sandbox, tmp_path: Path) -> None:
    edges = write_image(tmp_path / "edges.png", 64, 48)
    depth = write_image(tmp_path / "depth.png", 64, 48, colour=(9, 9, 9))
    pose = write_image(tmp_path / "pose.jpg", 64, 48, "JPEG")
    ok(
        run(
            sb,
            "controlnet",
            "a robot dancing",
            "--control",
            "canny:edges.png",
            "--control",
            "depth:depth.png:0.4",
            "--control",
            "pose:pose.jpg:1",
            "--seed",
            "8",
            "-o",
            "out",
        )
    )
    assert last_body(sb) == {
        "req_key": "high_aes_scheduler_svr_controlnet_v2.0",
        "prompt": "a robot dancing",
        "model_version": "general_controlnet_v2.0",
        "scale": 3.0,
        "ddim_steps": 16,
        "use_rephraser": True,
        "use_sr": True,
        "sr_seed": -1,
        "sr_strength": 0.4,
        "sr_scale": 3.5,
        "sr_steps": 10,
        "seed": 8,
        "return_url": False,
        "binary_data_base64": [file_b64(p) for p in (edges, depth, pose)],
        "controlnet_args": [
            {"type": "canny", "binary_data_index": 0, "strength": 0.6},
            {"type": "depth", "binary_data_index": 1, "strength": 0.4},
            {"type": "pose", "binary_data_index": 2, "strength": 1.0},
        ],
    }
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (64, 48)


def test_no_validate_sends_unconfirmed_control_types_and_strengths(
    sb: Sandbox, tmp_path: Path
) -> None:
    write_image(tmp_path / "edges.png", 64, 48)
    refused = run(sb, "controlnet", "robot", "--control", "lineart:edges.png:1.5", "--dry-run")
    assert refused.exit_code == 2 and "--no-validate" in refused.stderr
    shown = dry_run(
        sb, "controlnet", "robot", "--control", "lineart:edges.png:1.5", "--no-validate"
    )
    assert shown["body"]["controlnet_args"] == [
        {"type": "lineart", "binary_data_index": 0, "strength": 1.5}
    ]


# --- call ---------------------------------------------------------------------------------


def test_call_jimeng_i2i(sb: Sandbox, tmp_path: Path) -> None:
    image = write_image(tmp_path / "in.png", 160, 120)
    result = ok(
        run(
            sb,
            "call",
            "jimeng_i2i_v30",
            "--image",
            "in.png",
            "--set",
            "prompt=watercolour",
            "--set",
            "scale=0.5",
            "--set",
            "seed=12",
            "-o",
            "out",
            "--json",
        )
    )
    assert last_body(sb) == {
        "req_key": "jimeng_i2i_v30",
        "binary_data_base64": [file_b64(image)],
        "prompt": "watercolour",
        "scale": 0.5,
        "seed": 12,
    }
    (line,) = result.json_lines()
    assert line["req_key"] == "jimeng_i2i_v30" and line["seed"] == 12
    assert image_size(Path(line["path"])) == (160, 120)


def test_call_body_is_merged_under_the_flags(sb: Sandbox, tmp_path: Path) -> None:
    face = write_image(tmp_path / "face.png", 100, 100)
    style = write_image(tmp_path / "style.jpg", 100, 100, "JPEG")
    (tmp_path / "body.json").write_text(
        json.dumps(
            {
                "prompt": "from the body",
                "strength": 0.3,
                "face_image": "uri://binary_data?index=0",
                "style_image": "uri://binary_data?index=1",
            }
        )
    )
    ok(
        run(
            sb,
            "call",
            "img2img_anime_accelerated_maintain_id",
            "--image",
            "face.png",
            "--image",
            "style.jpg",
            "--body",
            "body.json",
            "--set",
            "prompt=from a flag",
            "--set",
            "seed=1",
            "-o",
            "out",
        )
    )
    assert last_body(sb) == {
        "prompt": "from a flag",
        "strength": 0.3,
        "face_image": "uri://binary_data?index=0",
        "style_image": "uri://binary_data?index=1",
        "req_key": "img2img_anime_accelerated_maintain_id",
        "binary_data_base64": [file_b64(face), file_b64(style)],
        "seed": 1,
    }
    assert len(written(tmp_path / "out")) == 1


def test_call_body_from_stdin(sb: Sandbox) -> None:
    ok(
        run(
            sb,
            "call",
            "jimeng_i2i_v30",
            "--body",
            "-",
            "--image",
            "https://example.com/a.png",
            "-o",
            "out",
            input='{"prompt": "piped", "seed": 4}',
        )
    )
    assert last_body(sb) == {
        "prompt": "piped",
        "seed": 4,
        "req_key": "jimeng_i2i_v30",
        "image_urls": ["https://example.com/a.png"],
    }


@pytest.mark.parametrize(
    ("action", "version"),
    [("CVSync2AsyncSubmitTask", "2022-08-31"), ("MyAction", "2099-01-01")],
)
def test_call_action_and_version_overrides(sb: Sandbox, action: str, version: str) -> None:
    record = dry_run(
        sb, "call", "jimeng_i2i_v30", "--set", "prompt=x", "--action", action, "--version", version
    )
    assert record["url"] == f"{sb.base_url}/volcv/v1?Action={action}&Version={version}"
    assert record["body"] == {"req_key": "jimeng_i2i_v30", "prompt": "x"}


# --- --dry-run ------------------------------------------------------------------------------


def _previews(body: Any) -> list[str]:
    return list(body.get("binary_data_base64", []))


def test_dry_run_of_each_command_shows_the_body_that_is_then_sent(
    sb: Sandbox, tmp_path: Path
) -> None:
    write_image(tmp_path / "a.png", 120, 90)
    write_image(tmp_path / "m.png", 120, 90, colour=(255, 255, 255))
    commands = [
        ["txt2img", "a red fox", *WATERMARKED],
        ["edit", "a.png", "make it red", "--seed", "1"],
        ["outpaint", "a.png", "garden", "--aspect", "16:9", "--seed", "1"],
        ["outpaint", "a.png", "--mask", "m.png", "--seed", "1"],
        [
            "product-style",
            "a.png",
            "--ref",
            "https://example.com/r.png",
            "--seed",
            "1",
            "--longer-side",
            "128",
            "--light-position",
            "Left Light",
        ],
        [
            "controlnet",
            "robot",
            "--control",
            "pose:a.png:0.9",
            "--control",
            "depth:m.png",
            "--seed",
            "1",
        ],
        ["call", "jimeng_i2i_v30", "--image", "a.png", "--set", "prompt=x"],
    ]
    for args in commands:
        shown = dry_run(sb, *args)
        assert shown["url"].startswith(f"{sb.base_url}/volcv/v1?Action=CVProcess")
        assert shown["content_length"] > 0 and len(shown["sha256"]) == 64
        previews = _previews(shown["body"])
        assert all(p.startswith("<base64 of ") for p in previews)
        ok(run(sb, *args, "-o", "out"))
        sent = last_body(sb)
        assert set(shown["body"]) == set(sent)
        for key, value in shown["body"].items():
            if key != "binary_data_base64":
                assert sent[key] == value, (args[0], key)
        assert len(sent.get("binary_data_base64", [])) == len(previews)
    assert sb.stats()["billed"] == len(commands)


def test_dry_run_text_lists_url_headers_and_body(sb: Sandbox) -> None:
    result = ok(run(sb, "txt2img", "fox", "--seed", "1", "--dry-run"))
    lines = result.stdout.splitlines()
    assert lines[0] == f"POST {sb.base_url}/volcv/v1?Action=CVProcess&Version=2022-08-31"
    assert "Authorization: Bearer ****" in lines
    body_text = result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1]
    assert json.loads(body_text)["prompt"] == "fox"
    assert "nothing was sent" in lines[-1]
    assert api_requests(sb) == 0


# --- both auths -----------------------------------------------------------------------------


OFFICIAL_ENV = {
    "VOLCCLI_API_KEY": None,
    "VOLCCLI_ACCESS_KEY": ACCESS_KEY,
    "VOLCCLI_SECRET_KEY": SECRET_KEY,
}


@pytest.mark.parametrize("auth", ["gateway", "official"])
def test_both_auths_write_a_valid_png(sb: Sandbox, tmp_path: Path, auth: str) -> None:
    source = write_image(tmp_path / "in.png", 200, 150)
    if auth == "official":
        args = ["--auth", "official", "--endpoint", sb.base_url]
        result = run_cli(
            ["edit", "in.png", "bluer", "--seed", "2", "-o", "out", *args], env=OFFICIAL_ENV
        )
    else:
        result = run(sb, "edit", "in.png", "bluer", "--seed", "2", "-o", "out")
    ok(result)
    entry = sb.stats()["recent"][-1]
    assert entry["auth"] == ("v4" if auth == "official" else "bearer")
    assert entry["status"] == 200 and entry["outcome"] == "ok"
    assert entry["body"]["binary_data_base64"] == [file_b64(source)]
    (path,) = written(tmp_path / "out")
    from volccli.images import verify_image_file

    assert verify_image_file(path) == ("PNG", 200, 150)
    for blob in (path.read_bytes(), Path(f"{path}.json").read_bytes()):
        assert SECRET_KEY.encode() not in blob and API_KEY.encode() not in blob


def test_official_dry_run_masks_the_access_key(sb: Sandbox) -> None:
    result = ok(
        run_cli(
            ["txt2img", "fox", "--dry-run", "--auth", "official", "--endpoint", sb.base_url],
            env=OFFICIAL_ENV,
        )
    )
    assert SECRET_KEY not in result.stdout and ACCESS_KEY not in result.stdout
    assert "HMAC-SHA256 Credential=AKLT" in result.stdout
    assert f"POST {sb.base_url}/?Action=CVProcess" in result.stdout
    assert api_requests(sb) == 0


def test_builtin_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = ok(run_cli(["--sandbox", "txt2img", "fox", "-W", "320", "-o", "out", "--json"]))
    (line,) = result.json_lines()
    assert image_size(Path(line["path"])) == (320, 512)
    official = ok(run_cli(["txt2img", "fox", "-o", "out", "--sandbox", "--auth", "official"]))
    assert Path(official.stdout.strip()).is_file()


def test_official_auth_with_a_session_token(sb: Sandbox) -> None:
    env = {**OFFICIAL_ENV, "VOLCCLI_SESSION_TOKEN": SESSION_TOKEN}
    args = ["--auth", "official", "--endpoint", sb.base_url]
    shown = ok(run_cli(["txt2img", "fox", "--dry-run", *args], env=env))
    assert SESSION_TOKEN not in shown.stdout and "X-Security-Token: ****" in shown.stdout
    assert "x-security-token" in shown.stdout  # signed
    result = ok(run_cli(["txt2img", "fox", "-o", "out", *args], env=env))
    assert Path(result.stdout.strip()).is_file()
    entry = sb.stats()["recent"][-1]
    assert entry["auth"] == "v4" and entry["outcome"] == "ok"
    assert SESSION_TOKEN not in Path(f"{result.stdout.strip()}.json").read_text()


def test_a_wrong_secret_is_a_config_error(sb: Sandbox) -> None:
    env = {**OFFICIAL_ENV, "VOLCCLI_SECRET_KEY": "not-the-secret"}
    result = run_cli(
        ["txt2img", "fox", "-o", "out", "--auth", "official", "--endpoint", sb.base_url], env=env
    )
    assert result.exit_code == 3
    assert len(result.stderr_lines) == 1 and "SignatureDoesNotMatch" in result.stderr
    assert "not-the-secret" not in result.stderr
    assert sb.stats()["billed"] == 0
    assert written(Path("out")) == []


def test_inputs_in_other_formats_are_sent_as_png(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "in.webp", 90, 60, "WEBP", lossless=True)
    result = ok(run(sb, "edit", "in.webp", "x", "--seed", "1", "-o", "out"))
    assert "note: in.webp: converted WEBP 90x60" in result.stderr
    (path,) = written(tmp_path / "out")
    recipe, _ = read_recipe(path)
    assert recipe is not None
    (described,) = recipe["body"]["binary_data_base64"]
    assert recipe["inputs"][0]["format"] == "PNG"
    # what was sent is the converted PNG whose hash the recipe records
    sent = last_body(sb)["binary_data_base64"][0]
    assert sent.startswith("<base64 ") and described["sha256"] == recipe["inputs"][0]["sha256"]
    assert image_size(path) == (90, 60)


def test_fit_downsizes_before_sending(sb: Sandbox, tmp_path: Path) -> None:
    write_image(tmp_path / "wide.png", 2000, 1000)
    result = ok(
        run(
            sb,
            "edit",
            "wide.png",
            "x",
            "--seed",
            "1",
            "-o",
            "out",
            "--fit",
            "--max-image-side",
            "800",
        )
    )
    assert "fitted PNG 2000x1000" in result.stderr and "800x400" in result.stderr
    (path,) = written(tmp_path / "out")
    assert image_size(path) == (800, 400)  # the sandbox answers at the size it received


def test_an_existing_name_gets_a_suffix_and_skip_sends_nothing(sb: Sandbox) -> None:
    first = ok(run(sb, "txt2img", "fox", "--seed", "1", "-o", "out")).stdout.strip()
    original = Path(first).read_bytes()
    second = ok(run(sb, "txt2img", "fox", "--seed", "1", "-o", "out")).stdout.strip()
    assert Path(second).name == "txt2img_fox_1-1.png"
    assert Path(first).read_bytes() == original
    requests_before = api_requests(sb)
    skipped = ok(run(sb, "txt2img", "fox", "--seed", "1", "-o", "out", "--on-exists", "skip"))
    assert skipped.stdout == "" and f"skipped txt2img 1: {first} already exists" in skipped.stderr
    as_json = ok(
        run(sb, "txt2img", "fox", "--seed", "1", "-o", "out", "--on-exists", "skip", "--json")
    )
    assert json.loads(as_json.stdout) == {
        "status": "skipped",
        "command": "txt2img",
        "index": 0,
        "path": first,
    }
    assert api_requests(sb) == requests_before


@pytest.mark.parametrize(
    ("marker", "code", "words"),
    [
        ("expired-url", 7, "expired"),
        ("bad-base64", 7, "not valid base64"),
        ("not-image", 7, "not an image"),
        ("truncate", 7, "may have been billed"),
        ("malformed-json", 7, "not a JSON object"),
        ("50412", 5, "50412"),
        ("50511", 5, "--on-filtered"),
        ("50400", 4, "50400"),
        ("50500", 7, "--retry-server-errors"),
    ],
)
def test_failed_answers_leave_nothing_behind(
    sb: Sandbox, tmp_path: Path, marker: str, code: int, words: str
) -> None:
    result = run(sb, "txt2img", f"fox volccli-fault:{marker}", "--return-url", "-o", "out")
    assert result.exit_code == code
    assert len(result.stderr_lines) == 1 and words in result.stderr
    assert result.stdout == ""
    assert listing(tmp_path / "out") == []  # not even a temp file


def test_a_base_url_given_with_the_gateway_path(sb: Sandbox) -> None:
    result = ok(run_cli(["txt2img", "fox", "-o", "out", "--base-url", f"{sb.base_url}/volcv/v1/"]))
    assert Path(result.stdout.strip()).is_file()
    assert sb.stats()["recent"][-1]["style"] == "gateway"


def test_a_proxy_from_the_environment_is_not_used_for_loopback(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a proxy that is not there
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    result = ok(run(sb, "txt2img", "fox", "--return-url", "--retries", "0", "-o", "out"))
    assert Path(result.stdout.strip()).is_file()
    assert sb.stats()["downloads"] == 1


# --- images carried as base64 in the body ---------------------------------------------


def _body_with_image(tmp_path: Path) -> tuple[Path, str]:
    source = write_image(tmp_path / "carried.jpg", 120, 80)
    encoded = base64.b64encode(source.read_bytes()).decode()
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": "bluer", "binary_data_base64": [encoded]}))
    return body, encoded


def test_base64_images_in_a_body_are_sent_as_given_and_recorded_by_hash(
    sb: Sandbox, tmp_path: Path
) -> None:
    body, encoded = _body_with_image(tmp_path)
    preview = dry_run(sb, "call", "jimeng_i2i_v30", "--body", body)
    assert encoded not in json.dumps(preview)
    assert preview["body"]["binary_data_base64"][0].startswith("<base64 of binary_data_base64[0]")
    ok(run(sb, "call", "jimeng_i2i_v30", "--body", body, "-o", "out"))
    sent = sb.stats()["recent"][-1]["body"]["binary_data_base64"]
    assert sent == [b64_summary(base64.b64decode(encoded))]  # the bytes given, unchanged
    (path,) = written(tmp_path / "out")
    sidecar = Path(f"{path}.json").read_text()
    history = ok(run(sb, "history", "-n", "1", "--json")).stdout
    for record in (sidecar, history, path.read_bytes().decode("latin-1")):
        assert encoded[:40] not in record
    data = base64.b64decode(encoded)
    assert json.loads(sidecar)["body"]["binary_data_base64"] == [
        {
            "sha256": hashlib.sha256(data).hexdigest(),
            "source": "binary_data_base64[0]",
            "bytes": len(data),
        }
    ]
    rerun = run(sb, "rerun", path)
    assert rerun.exit_code == 2
    assert "binary_data_base64[0], which cannot be read again" in rerun.stderr


def test_a_batch_row_with_base64_images_is_checked_and_recorded_by_hash(
    sb: Sandbox, tmp_path: Path
) -> None:
    _, encoded = _body_with_image(tmp_path)
    rows = tmp_path / "rows.jsonl"
    row = {"req_key": "jimeng_i2i_v30", "prompt": "y", "binary_data_base64": [encoded]}
    rows.write_text(json.dumps(row) + "\n")
    ok(run(sb, "batch", rows, "-o", "bo"))
    (path,) = written(tmp_path / "bo")
    assert encoded[:40] not in Path(f"{path}.json").read_text()
    assert sb.stats()["billed"] == 1


def test_a_bad_base64_image_in_a_batch_row_is_said_as_the_rows_field(
    sb: Sandbox, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"req_key": "jimeng_i2i_v30", "binary_data_base64": ["@@@"]}) + "\n")
    result = run(sb, "batch", rows, "-o", "bo")
    assert result.exit_code == 2
    assert f"{rows}:1: field binary_data_base64[0] is not valid base64" in result.stderr
    assert "--set" not in result.stderr
    assert api_requests(sb) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!not base64", "--body binary_data_base64[0] is not valid base64"),
        (base64.b64encode(b"plain words").decode(), "--body binary_data_base64[0] is text"),
        ("", "--body binary_data_base64[0] is empty"),
    ],
)
def test_a_bad_base64_image_in_a_body_is_refused_before_sending(
    sb: Sandbox, tmp_path: Path, value: str, message: str
) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": "x", "binary_data_base64": [value]}))
    result = run(sb, "call", "jimeng_i2i_v30", "--body", body, "-o", "out")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr
    assert api_requests(sb) == 0
    assert not (tmp_path / "out").exists()
