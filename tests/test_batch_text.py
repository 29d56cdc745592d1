"""What a batch file says must be text: a lone UTF-16 surrogate anywhere in a JSON row,
and a CSV header that does not name each column once, are refused when the file is
read, before any folder is made or request sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers_pipelines import box, images_in, volccli
from volccli.sandbox import Sandbox

__all__ = ["box"]  # the fixture, imported for pytest

TXT2IMG = '"command": "txt2img", "width": 256, "height": 256'
NOT_TEXT = "holds a lone UTF-16 surrogate (such as \\ud800), which is not text"


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# Rows as another tool writes them: the surrogate as a \u escape (raw strings keep it).
@pytest.mark.parametrize(
    ("row", "field"),
    [
        (r'"prompt": "s", "output_dir": "d\udc00"', "output_dir"),
        (r'"prompt_file": "p\ud800.txt"', "prompt_file"),
        (r'"prompt": "s", "name": "a\ud800"', "name"),
        (r'"prompt": "a \udc80 b"', "prompt"),
        (r'"prompt": "s", "set": ["scale=\ud800"]', "set[0]"),
        (r'"prompt": "s", "logo_info": {"logo_text_content": ["\udfff"]}', "logo_info"),
        (r'"prompt": "s", "pro\ud800mpt": "x"', "the key 'pro\\ud800mpt'"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_lone_surrogate_anywhere_in_a_json_row_is_refused_naming_its_field(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    row: str,
    field: str,
    dry_run: bool,
) -> None:
    jobs = tmp_path / "j.jsonl"
    jobs.write_text("{" + TXT2IMG + ", " + row + "}\n", encoding="ascii")
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), *(["--dry-run"] if dry_run else [])]

    run = volccli(capsys, args)

    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{jobs}:1: {field}" in line and NOT_TEXT in line
    assert "complete pair" in line  # the fix
    assert run.out == ""
    assert box.stats()["requests"] == {}
    assert not out.exists()


def test_a_surrogate_in_a_control_image_is_not_reported_as_a_missing_file(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "j.jsonl"
    jobs.write_text(
        '{"command": "controlnet", "prompt": "s", "control": "canny:\\udc00.png"}\n',
        encoding="ascii",
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert f"{jobs}:1: control {NOT_TEXT}" in one_error_line(run.err)
    assert "no such file" not in run.err
    assert box.stats()["requests"] == {}


def test_rows_in_a_json_array_are_checked_the_same_way(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "j.json"
    jobs.write_text(
        '[\n  {"command": "txt2img", "prompt": "fine"},\n'
        '  {"command": "txt2img", "prompt": "s", "output_dir": "d\\udc00"}\n]\n',
        encoding="ascii",
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert f"{jobs}:3: output_dir {NOT_TEXT}" in one_error_line(run.err)
    assert box.stats()["requests"] == {}


def test_with_keep_going_a_row_with_a_surrogate_is_invalid_and_the_others_run(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "j.jsonl"
    jobs.write_text(
        "{" + TXT2IMG + r', "prompt": "bad", "name": "a\ud800"}' + "\n"
        "{" + TXT2IMG + r', "prompt": "good", "name": "b"}' + "\n",
        encoding="ascii",
    )
    out = tmp_path / "out"
    run = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--keep-going", "--json"])
    assert run.code == 9
    statuses = {r["row"]: r["status"] for r in run.records[:-1]}
    assert statuses == {1: "invalid", 2: "ok"}
    assert [path.name for path in images_in(out)] == ["b.png"]
    assert box.stats()["billed"] == 1


@pytest.mark.parametrize(
    ("header", "words", "fix"),
    [
        ("command,prompt,prompt", "the header repeats prompt", "name each column once"),
        ("command,,prompt", "column 2 of the header has no name", "name every column"),
    ],
)
@pytest.mark.parametrize("keep_going", [False, True])
def test_a_csv_header_that_does_not_name_each_column_once_refuses_the_file(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    header: str,
    words: str,
    fix: str,
    keep_going: bool,
) -> None:
    jobs = tmp_path / "j.csv"
    jobs.write_text(f"{header}\ntxt2img,a,b\ntxt2img,c,d\n")
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), *(["--keep-going"] if keep_going else [])]

    run = volccli(capsys, args)

    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{jobs}:1: {words}" in line and "nothing was sent" in line and fix in line
    assert "--keep-going" not in line  # no row of such a file can be sent
    assert box.stats()["requests"] == {}
    assert not out.exists()
