"""Naming templates and the never-clobber placement of results."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import listing
from volccli.errors import ExitCode, InputError, OutputError
from volccli.output import (
    SLUG_MAX_BYTES,
    check_template,
    ensure_folder,
    place,
    precheck,
    render_name,
    sidecar_path,
    slug,
    target_for,
    write_temp,
    write_text_atomic,
)

NOW = datetime(2025, 3, 4, 5, 6, 7)


# --- render_name / slug -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        (
            "{command}_{prompt}_{seed}",
            {"command": "txt2img", "prompt": "A red bicycle!", "seed": 42},
            "txt2img_a-red-bicycle_42",
        ),
        (
            "{command}_{prompt}_{seed}",
            {"command": "txt2img", "prompt": "", "seed": 42},
            "txt2img_42",
        ),
        ("{prompt:5}-{seed}", {"prompt": "abcdefghij", "seed": 1}, "abcde-1"),
        ("{request_id:4}", {"request_id": "20250304ABCDEF"}, "2025"),
        ("{date}_{time}_{index}", {"index": 3}, "20250304_050607_3"),
        ("sub/{command}/{seed}", {"command": "edit", "seed": 7}, "sub/edit/7"),
        ("{request_id}", {"request_id": "a/b\\c"}, "a-b-c"),
        ("{request_id}", {"request_id": ".hidden"}, "hidden"),
        ("{prompt}", {"prompt": "!!!"}, "image"),
        ("{prompt}", {"prompt": "一只红色的猫"}, "一只红色的猫"),
        ("{input}_{n}", {"input": "My Photo", "n": 0}, "my-photo_0"),
    ],
)
def test_render_name(template: str, values: dict[str, object], expected: str) -> None:
    assert render_name(template, values, now=NOW) == expected


def test_token_values_never_climb_out(tmp_path: Path) -> None:
    name = render_name("{request_id}/{name}", {"request_id": "../../etc", "name": ".."}, now=NOW)
    assert ".." not in name.split("/")
    target = target_for(tmp_path, name, ".png")
    assert tmp_path.resolve() in target.parents


def test_slug_keeps_every_script_and_caps_bytes() -> None:
    assert slug("一只红色的猫 in the rain") == "一只红色的猫-in-the-rain"
    assert slug("ＡＢＣ　Ｄ") == "abc-d"  # full-width forms normalised
    assert slug("Hello, World!") == "hello-world"
    assert slug("a" * 100, max_chars=10) == "a" * 10
    long_cjk = slug("猫" * 60)  # 48 characters of 3 bytes each would exceed the cap
    assert set(long_cjk) == {"猫"}
    assert len(long_cjk.encode()) <= SLUG_MAX_BYTES
    assert len(long_cjk.encode()) > SLUG_MAX_BYTES - 3
    capped = slug("ab-" * 200, max_chars=500)
    assert len(capped.encode()) <= SLUG_MAX_BYTES and not capped.endswith("-")


@pytest.mark.parametrize(
    "template",
    [
        "../x",
        "a/../b",
        "..\\x",
        "/abs/{seed}",
        "\\abs",
        "~/x",
        "C:\\x",
        "{bogus}",
        "{prompt:x}",
        "{prompt:0}",
        "{prompt!r}",
        "{prompt",
        "",
        "   ",
    ],
)
def test_check_template_refuses(template: str) -> None:
    with pytest.raises(InputError) as info:
        check_template(template)
    assert "--name" in info.value.message
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    "template",
    ["{command}_{prompt}_{seed}", "sub/{seed}", "{prompt:20}", "x..y_{seed}", "{{literal}}_{seed}"],
)
def test_check_template_accepts(template: str) -> None:
    check_template(template)


def test_target_for_refuses_a_name_outside(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError):
        target_for(tmp_path / "out", "../elsewhere", ".png")


# --- place --------------------------------------------------------------------------------


def _tmp(folder: Path, data: bytes) -> Path:
    return write_temp(folder, data)


def test_write_temp_gives_an_ordinary_file_mode(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    path = _tmp(tmp_path, b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.name.startswith(".volccli-")


def test_place_suffix_never_clobbers(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    target.write_bytes(b"original")
    (tmp_path / "img-1.png.json").write_text("{}")  # a sidecar alone also reserves a name
    placed = place(_tmp(tmp_path, b"new"), target, "suffix")
    assert placed == tmp_path / "img-2.png"
    assert target.read_bytes() == b"original"
    assert placed.read_bytes() == b"new"
    assert listing(tmp_path) == ["img-1.png.json", "img-2.png", "img.png"]


def test_place_skip_and_fail_keep_the_original(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    target.write_bytes(b"original")
    assert place(_tmp(tmp_path, b"new"), target, "skip") is None
    with pytest.raises(OutputError) as info:
        place(_tmp(tmp_path, b"new"), target, "fail")
    assert info.value.exit_code == ExitCode.OUTPUT
    assert "already exists" in info.value.message
    assert target.read_bytes() == b"original"
    assert listing(tmp_path) == ["img.png"]  # no temp files left behind


def test_place_overwrite_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    target.write_bytes(b"original")
    assert place(_tmp(tmp_path, b"new"), target, "overwrite") == target
    assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["img.png"]


def test_place_creates_subfolders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "img.png"
    assert place(_tmp(tmp_path, b"x"), target, "fail") == target
    assert target.read_bytes() == b"x"


def _race(tmp_path: Path, policy: str, rounds: int = 25) -> list[list[object]]:
    results: list[list[object]] = []
    for n in range(rounds):
        target = tmp_path / f"race{n}.png"
        barrier = threading.Barrier(2)
        got: list[object] = [None, None]
        temps = [_tmp(tmp_path, f"writer {i} round {n}".encode()) for i in range(2)]

        def writer(
            i: int,
            target: Path = target,
            barrier: threading.Barrier = barrier,
            got: list[object] = got,
            temps: list[Path] = temps,
        ) -> None:
            barrier.wait()
            try:
                got[i] = place(temps[i], target, policy)  # type: ignore[arg-type]
            except OutputError as error:
                got[i] = error

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.append(got)
    return results


def test_two_threads_racing_for_one_name_both_survive_with_suffix(tmp_path: Path) -> None:
    for n, got in enumerate(_race(tmp_path, "suffix")):
        paths = sorted(str(p) for p in got)
        assert paths == [str(tmp_path / f"race{n}-1.png"), str(tmp_path / f"race{n}.png")]
        contents = {Path(p).read_bytes() for p in paths}
        assert contents == {f"writer 0 round {n}".encode(), f"writer 1 round {n}".encode()}
    assert not [name for name in listing(tmp_path) if name.startswith(".volccli-")]


def test_two_threads_racing_with_fail_exactly_one_wins(tmp_path: Path) -> None:
    for n, got in enumerate(_race(tmp_path, "fail")):
        winners = [g for g in got if isinstance(g, Path)]
        losers = [g for g in got if isinstance(g, OutputError)]
        assert len(winners) == 1 and len(losers) == 1
        index = got.index(winners[0])
        assert winners[0].read_bytes() == f"writer {index} round {n}".encode()
    assert not [name for name in listing(tmp_path) if name.startswith(".volccli-")]


def test_two_threads_racing_with_skip_exactly_one_writes(tmp_path: Path) -> None:
    for got in _race(tmp_path, "skip"):
        assert sum(isinstance(g, Path) for g in got) == 1
        assert sum(g is None for g in got) == 1


def test_precheck(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    assert precheck(target, "fail") == "write"
    sidecar_path(target).write_text("{}")  # an orphan sidecar counts as taken
    assert precheck(target, "skip") == "skip"
    assert precheck(target, "suffix") == "write"
    # Somebody's file with the sidecar's name: overwrite would replace it.
    with pytest.raises(OutputError, match="is not a volccli recipe"):
        precheck(target, "overwrite")
    assert precheck(target, "overwrite", sidecar=False) == "write"
    with pytest.raises(OutputError):
        precheck(target, "fail")


def test_a_stale_recipe_of_a_deleted_image_gives_its_name_back(tmp_path: Path) -> None:
    from volccli.recipe import SCHEMA

    target = tmp_path / "img.png"
    sidecar_path(target).write_text(json.dumps({"schema": SCHEMA, "seed": 1}))
    assert precheck(target, "skip") == "write"  # nothing to skip: the image is gone
    placed = place(write_temp(tmp_path, b"new image"), target, "suffix")
    assert placed == target  # not img-1.png beside the stale recipe
    # Anything else holding the sidecar's name is somebody's file: left alone.
    other = tmp_path / "other.png"
    sidecar_path(other).write_text('{"mine": true}')
    assert place(write_temp(tmp_path, b"x"), other, "suffix") == tmp_path / "other-1.png"
    assert sidecar_path(other).read_text() == '{"mine": true}'


def test_write_text_atomic(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two")
    assert path.read_text() == "two"
    with pytest.raises(OutputError):
        write_text_atomic(path, "three", replace=False)
    assert path.read_text() == "two"
    assert listing(tmp_path) == ["a.json"]


def test_ensure_folder_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError) as info:
        ensure_folder(tmp_path / "file.txt" / "sub")
    assert info.value.exit_code == ExitCode.OUTPUT
    assert "file.txt" in info.value.message
    ensure_folder(tmp_path / "new" / "deeper")
    assert (tmp_path / "new" / "deeper").is_dir()
    assert listing(tmp_path) == ["file.txt", "new/", "new/deeper/"]


def test_write_temp_makes_a_missing_folder_and_writes_every_piece(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "deeper"
    path = write_temp(folder, [b"ab", memoryview(b"cdef")[1:], b""])
    assert path.parent == folder and path.read_bytes() == b"abdef"


def test_target_for_follows_the_working_folder_of_a_relative_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        assert target_for(Path("."), "sub/img", ".png") == (tmp_path / name / "sub/img.png")
        with pytest.raises(InputError):
            target_for(Path("."), "sub/../../x", ".png")


def test_write_temp_leaves_nothing_when_interrupted_mid_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volccli import output

    def interrupted(fd: int, data: object) -> int:
        raise KeyboardInterrupt  # Ctrl-C, or SIGTERM through main()

    monkeypatch.setattr(output.os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        output.write_temp(tmp_path, b"half an image")
    assert list(tmp_path.iterdir()) == []


def test_a_long_name_is_cut_to_fit_a_file_system_name_in_bytes(tmp_path: Path) -> None:
    # 300 CJK characters are 900 bytes: a file system allows 255 per name.
    name = render_name("长" * 300 + "/" + "a" * 300, {})
    folder, file = name.split("/")
    assert folder == "长" * 66 and len(folder.encode()) == 198
    assert file == "a" * 200
    placed = place(write_temp(tmp_path, b"x"), target_for(tmp_path, name, ".png"), "suffix")
    assert placed is not None and placed.read_bytes() == b"x"


def test_an_image_overwritten_without_a_sidecar_takes_its_old_recipe_along(
    tmp_path: Path,
) -> None:
    from volccli.output import drop_replaced_recipe
    from volccli.recipe import SCHEMA

    image = tmp_path / "same.png"
    sidecar_path(image).write_text(json.dumps({"schema": SCHEMA, "seed": 1}))
    drop_replaced_recipe(image)
    assert not sidecar_path(image).exists()
    sidecar_path(image).write_text('{"notes": "mine"}')
    drop_replaced_recipe(image)
    assert sidecar_path(image).read_text() == '{"notes": "mine"}'
