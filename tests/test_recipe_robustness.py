"""`inspect` and `rerun` on damaged, hand-edited and stale recipes: exit 2 or a sound recipe.

A recipe is read from files a person can cut, edit or leave behind. Whatever is wrong
with them, the answer is one line and exit 2 (or the other, sound copy of the recipe with
a note), never a traceback, never exit 1, and never a request built from a wrong recipe.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.helpers_pipelines import Run, box, pixels, volccli
from volccli.cli.recipe_cmd import render
from volccli.recipe import (
    KEYWORD,
    MAX_RECIPE_BYTES,
    RecipeDamaged,
    embed,
    png_chunk,
    read_embedded,
    read_recipe,
    shape_problem,
)
from volccli.sandbox import Sandbox

__all__ = ["box"]


def make(capsys: pytest.CaptureFixture[str], args: list[str]) -> Path:
    run = volccli(capsys, [*args, "--json"])
    assert run.code == 0, run.err
    return Path(run.records[0]["path"])


def refused(run: Run, *words: str) -> None:
    """Exit 2, one line on stderr naming the problem, nothing on stdout."""
    assert run.code == 2, (run.code, run.err)
    assert run.out == ""
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert "Traceback" not in run.err and "unexpected error" not in run.err
    for word in words:
        assert word in run.err, (word, run.err)


def sound_or_refused(run: Run) -> None:
    assert run.code in (0, 2), (run.code, run.err)
    assert "Traceback" not in run.err and "unexpected error" not in run.err


def without_recipe_chunk(data: bytes) -> bytes:
    """A volccli PNG with its recipe chunk taken out."""
    at = data.index(b"iTXt" + KEYWORD.encode()) - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    return data[:at] + data[at + 12 + length :]


def with_chunk(data: bytes, chunk: bytes) -> bytes:
    return data[:-12] + chunk + data[-12:]


def jpeg_with(recipe: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 120, 200)).save(out, format="JPEG")
    return embed(out.getvalue(), recipe)


# --- damaged image files ------------------------------------------------------------------


def test_a_truncated_jpeg_is_a_damaged_recipe_for_inspect_and_rerun(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "a jpeg fox", "-s", "3", "-o", str(tmp_path)])
    recipe = json.loads(Path(f"{image}.json").read_text())
    whole = tmp_path / "x.jpg"
    whole.write_bytes(jpeg_with(recipe))
    assert read_embedded(whole) == recipe  # the JPEG comment is read back whole
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:5])
    sent = box.stats()["billed"]
    for command in (["inspect"], ["rerun", "-o", str(tmp_path / "re")]):
        refused(volccli(capsys, [*command, str(cut)]), "cut.jpg: the recipe is damaged", "JPEG")
    assert box.stats()["billed"] == sent
    assert not (tmp_path / "re").exists()


def test_a_compressed_recipe_chunk_that_does_not_inflate_is_damaged(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "deflate me", "-o", str(tmp_path), "--no-sidecar"])
    bare = without_recipe_chunk(image.read_bytes())
    chunk = png_chunk(b"iTXt", KEYWORD.encode() + b"\x00\x01\x00\x00\x00" + b"not deflate")
    image.write_bytes(with_chunk(bare, chunk))
    for command in ("inspect", "rerun"):
        refused(volccli(capsys, [command, str(image)]), "the recipe is damaged", "inflate")


def test_a_recipe_chunk_with_a_wrong_crc_or_a_huge_inflation_is_damaged(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(source)
    plain = embed(source.read_bytes(), {"schema": "volccli.recipe/1", "body": {"seed": 1}})
    flipped = bytearray(plain)
    flipped[plain.index(b'"seed":1') + 7] = ord("7")  # a changed digit keeps valid JSON
    (tmp_path / "crc.png").write_bytes(bytes(flipped))
    with pytest.raises(RecipeDamaged, match="CRC"):
        read_embedded(tmp_path / "crc.png")
    bomb = zlib.compress(b" " * (MAX_RECIPE_BYTES + 1024), 9)
    chunk = png_chunk(b"iTXt", KEYWORD.encode() + b"\x00\x01\x00\x00\x00" + bomb)
    (tmp_path / "bomb.png").write_bytes(with_chunk(source.read_bytes(), chunk))
    with pytest.raises(RecipeDamaged, match="inflates to more than"):
        read_embedded(tmp_path / "bomb.png")


def test_every_truncation_of_an_image_is_read_or_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "cut me anywhere", "-o", str(tmp_path), "--no-sidecar"])
    recipe = read_embedded(image)
    assert recipe is not None
    jpeg = jpeg_with(recipe)
    for name, data in (("cut.png", image.read_bytes()), ("cut.jpg", jpeg)):
        recipe_at = data.index(KEYWORD.encode())
        # every length around the recipe, and a spread across the rest of the file
        lengths = {*range(0, 40), *range(recipe_at - 20, recipe_at + 60)}
        lengths |= set(range(0, len(data), max(1, len(data) // 25))) | {len(data) - 1}
        target = tmp_path / name
        for length in sorted(n for n in lengths if 0 <= n < len(data)):
            target.write_bytes(data[:length])
            run = volccli(capsys, ["inspect", str(target), "--json"])
            sound_or_refused(run)
            if run.code == 0:  # only a cut after the recipe leaves it readable
                assert run.records[0]["body"] == recipe["body"], length
            else:
                assert "damaged" in run.err or "has no volccli recipe" in run.err, run.err


@functools.cache
def small_images() -> tuple[bytes, bytes]:
    """A PNG and a JPEG, each with a recipe inside."""
    recipe = {"schema": "volccli.recipe/1", "req_key": "k", "body": {"prompt": "p"}}
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return embed(buffer.getvalue(), recipe), jpeg_with(recipe)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_read_embedded_raises_only_recipe_damaged(data: st.DataObject) -> None:
    import tempfile

    original = data.draw(st.sampled_from(small_images()), label="image")
    damaged = bytearray(original)
    # Anywhere in the file, but mostly in the headers and around the recipe.
    recipe_at = original.index(KEYWORD.encode())
    places = st.one_of(
        st.integers(0, len(damaged) - 1),
        st.integers(0, 24),
        st.integers(recipe_at - 12, min(recipe_at + 60, len(damaged) - 1)),
    )
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        damaged[data.draw(places, label="at")] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.one_of(st.just(len(damaged)), places), label="cut")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.img"
        path.write_bytes(bytes(damaged[:cut]))
        try:
            found = read_embedded(path)
        except RecipeDamaged as exc:
            assert str(exc)
        else:
            assert found is None or isinstance(found, dict)


# --- hand-edited sidecars ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("inputs", "zzz", '"inputs" should be a list of objects, not text'),
        ("inputs", [5], '"inputs[0]" should be an object, not a number'),
        ("file", "zz", '"file" should be an object, not text'),
        ("action", 5, '"action" should be like "CVProcess", not 5'),
        ("action", "CVProcess&x=1", '"action" should be like "CVProcess"'),
        ("version", "yesterday", '"version" should be like "2022-08-31"'),
        ("body", [], '"body" should be an object, not a list'),
        ("seed", "7", '"seed" should be a whole number, not text'),
    ],
)
def test_a_sidecar_of_the_wrong_types_is_damaged(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: Any,
    words: str,
) -> None:
    image = make(capsys, ["txt2img", "typed", "-s", "4", "-o", str(tmp_path / "out")])
    sidecar = Path(f"{image}.json")
    recipe = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**recipe, key: value}))
    sent = box.stats()["billed"]

    # The copy inside the image is sound: it is used, and a note says why.
    shown = volccli(capsys, ["inspect", str(image), "--json"])
    assert shown.code == 0, shown.err
    assert shown.records[0]["found_in"] == f"{image} (embedded)"
    assert f"{sidecar.name} is damaged ({words}" in shown.err
    dry = volccli(capsys, ["rerun", str(image), "--dry-run", "--json"])
    assert dry.code == 0 and dry.records[0]["url"].endswith("?Action=CVProcess&Version=2022-08-31")

    # Given itself, or with no copy inside the image, the damaged sidecar is refused.
    refused(volccli(capsys, ["rerun", str(sidecar), "--dry-run"]), "the recipe is damaged", words)
    image.write_bytes(without_recipe_chunk(image.read_bytes()))
    for command in (["inspect"], ["rerun", "--dry-run"], ["rerun", "-o", str(tmp_path / "re")]):
        refused(
            volccli(capsys, [*command, str(image)]),
            "has no volccli recipe that can be read",
            f"{sidecar.name} is damaged ({words}",
        )
    assert box.stats()["billed"] == sent


TYPE_SWAPS: list[Any] = [-1.5, "zz", [5], {"a": 1}, None, True]


def swapped(recipe: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The recipe with each field, nested ones included, replaced by each other type."""
    out: list[tuple[str, dict[str, Any]]] = []

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            for value in TYPE_SWAPS:
                changed = copy.deepcopy(recipe)
                target = changed
                for step in path:
                    target = target[step]
                target[key] = value
                out.append((".".join(map(str, (*path, key))), changed))
            if isinstance(node[key], (dict, list)) and node[key]:
                visit(node[key], (*path, key))

    visit(recipe, ())
    return out


def test_type_swaps_of_a_real_recipe_are_read_or_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), (90, 10, 10)).save(photo)
    image = make(capsys, ["edit", str(photo), "swap", "-s", "9", "-o", str(tmp_path), "--no-embed"])
    sidecar = Path(f"{image}.json")
    recipe = json.loads(sidecar.read_text())
    sent = box.stats()["billed"]
    cases = swapped(recipe)
    assert len(cases) > 200
    outcomes = set()
    for where, changed in cases:
        sidecar.write_text(json.dumps(changed))
        for command in (["inspect", "--json"], ["rerun", "--dry-run", "--json"]):
            run = volccli(capsys, [*command, str(image)])
            sound_or_refused(run)
            outcomes.add(run.code)
            if run.code == 2:
                assert any(
                    words in run.err
                    for words in ("has no volccli recipe", "the recipe", "describes another image")
                ), (where, run.err)
            elif command[0] == "rerun":
                url = run.records[0]["url"]
                assert url.endswith(("&Version=2022-08-31", "Version=2022-08-31")), (where, url)
    assert outcomes == {0, 2}
    assert box.stats()["billed"] == sent  # --dry-run sends nothing, whatever the recipe


def test_truncations_of_a_sidecar_are_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make(capsys, ["txt2img", "short sidecar", "-o", str(tmp_path), "--no-embed"])
    sidecar = Path(f"{image}.json")
    text = sidecar.read_text()
    for length in range(0, len(text) - 1, 19):
        sidecar.write_text(text[:length])
        for command in (["inspect"], ["rerun", "--dry-run"]):
            run = volccli(capsys, [*command, str(image)])
            refused(run, "has no volccli recipe that can be read", "is damaged (not JSON")


@settings(max_examples=300, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=12,
    ),
    key=st.sampled_from(
        ["body", "inputs", "file", "seed", "action", "version", "req_key", "command", "x"]
    ),
)
def test_shape_problem_names_a_problem_or_the_recipe_renders(value: Any, key: str) -> None:
    recipe = {
        "schema": "volccli.recipe/1",
        "req_key": "high_aes_general_v14",
        "body": {"prompt": "p", "image": {"sha256": "0" * 64, "source": "a.png", "bytes": 3}},
        "inputs": [{"source": "a.png", "sha256": "0" * 64, "bytes": 3}],
        "file": {"name": "x.png", "sha256": "1" * 64, "width": 4, "height": 4},
        key: value,
    }
    problem = shape_problem(recipe)
    if problem:
        assert problem.startswith(('"', "it names")), problem
    else:
        assert "recipe from here" in render(recipe, "here")


# --- stale and damaged sidecars ----------------------------------------------------------


def test_a_stale_sidecar_gives_way_to_the_recipe_inside_the_image(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    first = make(capsys, ["txt2img", "first prompt", "--name", "first", "-s", "1", "-o", str(out)])
    image = make(capsys, ["txt2img", "second prompt", "--name", "same", "-s", "2", "-o", str(out)])
    # A sidecar that describes another image (copied over it by a sync tool, say).
    Path(f"{image}.json").write_bytes(Path(f"{first}.json").read_bytes())
    assert json.loads(Path(f"{image}.json").read_text())["body"]["prompt"] == "first prompt"
    found, where = read_recipe(image)  # what a resumed batch checks its files against
    assert found is not None and found["body"]["prompt"] == "second prompt"
    assert where == f"{image} (embedded)"
    shown = volccli(capsys, ["inspect", str(image)])
    assert shown.code == 0
    assert "second prompt" in shown.out and "first prompt" not in shown.out
    assert shown.err.count("same.png.json describes another image") == 1
    again = make(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    assert box.stats()["recent"][-1]["body"]["prompt"] == "second prompt"
    assert pixels(again) == pixels(image)


def test_a_stale_sidecar_alone_is_shown_with_a_warning_and_rerun_refuses_it(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    common = ["--no-embed", "-o", str(out)]
    first = make(capsys, ["txt2img", "first prompt", "-s", "1", "--name", "first", *common])
    image = make(capsys, ["txt2img", "second prompt", "-s", "2", "--name", "same", *common])
    # A sidecar that describes another image (copied over it by a sync tool, say).
    Path(f"{image}.json").write_bytes(Path(f"{first}.json").read_bytes())
    shown = volccli(capsys, ["inspect", str(image), "--json"])
    assert shown.code == 0 and shown.records[0]["file_changed"] is True
    assert "is not the file its sidecar describes" in shown.err
    sent = box.stats()["billed"]
    run = volccli(capsys, ["rerun", str(image), "-o", str(tmp_path / "re")])
    refused(run, "same.png.json describes another image", f"volccli rerun {image}.json")
    assert box.stats()["billed"] == sent and not (tmp_path / "re").exists()
    # Named itself, the sidecar is used as it is: the way out the hint gives.
    dry = volccli(capsys, ["rerun", f"{image}.json", "--dry-run", "--json"])
    assert dry.code == 0 and dry.records[0]["body"]["prompt"] == "first prompt"


def test_a_malformed_sidecar_is_named_as_damaged(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded = make(capsys, ["txt2img", "kept inside", "-o", str(tmp_path / "a")])
    Path(f"{embedded}.json").write_text('{"schema": "volccli.recipe/1", broken')
    shown = volccli(capsys, ["inspect", str(embedded), "--json"])
    assert shown.code == 0 and shown.records[0]["body"]["prompt"] == "kept inside"
    assert f"{embedded.name}.json is damaged (not JSON" in shown.err
    assert "using the recipe inside" in shown.err

    bare = make(capsys, ["txt2img", "nothing inside", "-o", str(tmp_path / "b"), "--no-embed"])
    sidecar = Path(f"{bare}.json")
    sidecar.write_text("x{")
    refused(volccli(capsys, ["inspect", str(bare)]), f"{sidecar.name} is damaged (not JSON")
    sidecar.write_text('{"generator": "another tool", "body": {}}')
    refused(volccli(capsys, ["rerun", str(bare)]), f"{sidecar.name} is not a volccli recipe")
    sidecar.unlink()
    sidecar.mkdir()
    refused(volccli(capsys, ["inspect", str(bare)]), f"{sidecar.name} is not a regular file")


def test_inspect_names_what_is_not_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(volccli(capsys, ["inspect", os.devnull]), f"{os.devnull}: not a regular file")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # reading it would wait forever
    refused(volccli(capsys, ["rerun", str(fifo)]), "pipe.png: not a regular file")
    refused(volccli(capsys, ["inspect", str(tmp_path)]), ": a folder")
    refused(volccli(capsys, ["inspect", str(tmp_path / "gone.png")]), "gone.png: no such file")


def test_overwriting_an_image_without_a_sidecar_removes_its_old_recipe(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    first = make(capsys, ["txt2img", "first prompt", "--name", "same", "-s", "1", "-o", str(out)])
    assert Path(f"{first}.json").is_file()
    args = ["txt2img", "second prompt", "--name", "same", "-s", "2", "--on-exists", "overwrite"]
    image = make(capsys, [*args, "--no-sidecar", "-o", str(out)])
    assert image == first and not Path(f"{image}.json").exists()
    shown = volccli(capsys, ["inspect", str(image)])
    assert shown.code == 0 and "second prompt" in shown.out
