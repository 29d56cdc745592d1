"""`inspect` and `rerun`: the recipe read back from the sidecar or the file, and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.helpers_pipelines import box, images_in, pixels, png, volccli
from volccli.payload import ImageRef, describe_body, rehydrate
from volccli.sandbox import API_KEY, Sandbox

__all__ = ["box"]


def make(capsys: pytest.CaptureFixture[str], args: list[str]) -> Path:
    run = volccli(capsys, [*args, "--json"])
    assert run.code == 0, run.err
    return Path(run.records[0]["path"])


def last_body(sandbox: Sandbox) -> dict:
    return sandbox.stats()["recent"][-1]["body"]


def test_inspect_shows_the_recipe_from_the_sidecar(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(
        capsys, ["txt2img", "a heron at dawn", "-s", "77", "-W", "640", "-o", str(tmp_path)]
    )
    run = volccli(capsys, ["inspect", str(image)])
    assert run.code == 0
    assert f"recipe from {image}.json" in run.out
    assert "a heron at dawn" in run.out and "77" in run.out and "640x512 PNG" in run.out
    as_json = volccli(capsys, ["inspect", str(image), "--json"]).records[0]
    assert as_json["body"]["prompt"] == "a heron at dawn" and as_json["seed"] == 77
    assert as_json["found_in"] == f"{image}.json" and as_json["file_changed"] is False


def test_without_a_sidecar_the_embedded_recipe_is_used(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "embedded only", "-s", "5", "-o", str(tmp_path)])
    Path(f"{image}.json").unlink()
    run = volccli(capsys, ["inspect", str(image), "--json"])
    assert run.code == 0
    assert run.records[0]["found_in"] == f"{image} (embedded)"
    assert run.records[0]["body"]["prompt"] == "embedded only"
    again = make(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert pixels(again) == pixels(image)


def test_the_embedded_recipe_is_plain_text_that_pillow_reads_and_old_compressed_ones_too(
    tmp_path: Path,
) -> None:
    import zlib

    from PIL import Image

    from volccli.recipe import KEYWORD, embed, png_chunk, read_embedded

    recipe = {"schema": "volccli.recipe/1", "body": {"prompt": "一只鹭 at dawn"}}
    plain = tmp_path / "plain.png"
    plain.write_bytes(embed(png(tmp_path / "in.png").read_bytes(), recipe))
    assert "一只鹭 at dawn".encode() in plain.read_bytes()  # greppable, not deflated
    with Image.open(plain) as image:
        assert json.loads(image.text[KEYWORD]) == recipe
    assert read_embedded(plain) == recipe

    # What earlier versions wrote: the same iTXt chunk with the text deflated.
    text = json.dumps(recipe).encode()
    chunk = png_chunk(b"iTXt", KEYWORD.encode() + b"\x00\x01\x00\x00\x00" + zlib.compress(text))
    source = (tmp_path / "in.png").read_bytes()
    older = tmp_path / "older.png"
    older.write_bytes(source[:-12] + chunk + source[-12:])
    assert read_embedded(older) == recipe


def test_an_image_without_a_recipe_is_a_clear_error(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = make(capsys, ["txt2img", "bare", "-o", str(tmp_path), "--no-sidecar", "--no-embed"])
    for command in ("inspect", "rerun"):
        run = volccli(capsys, [command, str(bare)])
        assert run.code == 2
        assert "has no volccli recipe" in run.err and "Traceback" not in run.err
    missing = volccli(capsys, ["inspect", str(tmp_path / "nope.png")])
    assert missing.code == 2 and "no such file" in missing.err


def test_rerun_repeats_the_request_and_makes_the_same_image(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "same again", "--steps", "12", "-o", str(tmp_path)])
    first_body = last_body(box)
    again = make(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert last_body(box) == first_body  # the seed drawn the first time is sent again
    assert again.name == image.name
    assert pixels(again) == pixels(image)
    recipe = json.loads(Path(f"{again}.json").read_text())
    assert recipe["command"] == "txt2img" and recipe["body"]["ddim_steps"] == 12


def test_rerun_varies_the_seed_and_fields(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "vary me", "-s", "3", "-o", str(tmp_path)])
    varied = make(
        capsys,
        [
            "rerun",
            str(image),
            "--seed",
            "4",
            "--set",
            "scale=5.5",
            "--set",
            "logo_info.add_logo=true",
            "-o",
            str(tmp_path),
            "--name",
            "varied",
        ],
    )
    body = last_body(box)
    assert (body["seed"], body["scale"], body["logo_info"]) == (4, 5.5, {"add_logo": True})
    assert body["prompt"] == "vary me"
    assert varied.name == "varied.png"
    assert pixels(varied) != pixels(image)


def test_rerun_reloads_inputs_and_refuses_changed_or_missing_ones(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = png(tmp_path / "photo.png", (72, 48))
    image = make(capsys, ["edit", str(photo), "make it green", "-o", str(tmp_path / "out")])
    again = make(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert pixels(again) == pixels(image)
    # The new recipe lists the same input, as read back and checked.
    (recorded,) = json.loads(Path(f"{image}.json").read_text())["inputs"]
    assert json.loads(Path(f"{again}.json").read_text())["inputs"] == [recorded]
    assert recorded["source"] == str(photo)
    sent = box.stats()["billed"]

    png(photo, (72, 48), colour=(0, 0, 255))  # the input changed
    changed = volccli(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert changed.code == 2
    assert str(photo) in changed.err and "has changed" in changed.err
    photo.unlink()
    missing = volccli(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert missing.code == 2
    assert str(photo) in missing.err and "missing" in missing.err
    assert box.stats()["billed"] == sent  # nothing was sent for either
    assert len(images_in(tmp_path / "re")) == 1


def test_rerun_finds_a_relative_input_from_any_folder(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    png(work / "photo.png", (72, 48))
    monkeypatch.chdir(work)
    image = make(capsys, ["edit", "photo.png", "make it green", "-o", "out"])
    monkeypatch.chdir(elsewhere)
    again = make(capsys, ["rerun", str(image), "-o", "re"])
    assert pixels(again) == pixels(image)
    assert again.parent == elsewhere / "re"


def test_rerun_passes_url_inputs_through(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = requests.post(
        f"{box.base_url}/volcv/v1?Action=CVProcess&Version=2022-08-31",
        json={"req_key": "high_aes_general_v14", "prompt": "a source", "return_url": True},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ).json()
    url = answer["data"]["image_urls"][0]
    image = make(capsys, ["edit", url, "recolour", "-o", str(tmp_path)])
    again = make(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert last_body(box)["image_urls"] == [url]
    assert pixels(again) == pixels(image)


def test_rerun_dry_run_sends_nothing(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "just show", "-s", "8", "-o", str(tmp_path)])
    sent = box.stats()["billed"]
    run = volccli(capsys, ["rerun", str(image), "--dry-run", "--json"])
    assert run.code == 0, run.err
    assert run.records[0]["body"]["seed"] == 8
    assert box.stats()["billed"] == sent


def test_rehydrate_is_the_inverse_of_describe_body(tmp_path: Path) -> None:
    from volccli.images import ImageLimits, load_image

    def load(path: str):
        return load_image(path, "IMAGE", ImageLimits(), read_stdin=bytes)

    photo = load(str(png(tmp_path / "a.png")))
    body = {
        "req_key": "x",
        "binary_data_base64": [ImageRef(photo)],
        "logo_info": {"a": 1},
        "image_urls": ["https://example.invalid/b.png"],
    }
    described = describe_body(body)
    back = rehydrate(described, lambda desc: load(desc["source"]))
    assert isinstance(back["binary_data_base64"][0], ImageRef)
    assert back["binary_data_base64"][0].image.sha256 == photo.sha256
    assert {k: v for k, v in back.items() if k != "binary_data_base64"} == {
        k: v for k, v in body.items() if k != "binary_data_base64"
    }
    assert describe_body(back) == described
