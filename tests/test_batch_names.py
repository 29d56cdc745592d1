"""Batch rows that would write one file: refused before anything is paid for, unless
--on-exists suffix gives every image a name of its own (and a rerun still finds each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers_pipelines import box, images_in, png, volccli, write_jsonl
from volccli.sandbox import Sandbox

__all__ = ["box"]  # the fixture, imported for pytest


def row(prompt: str, **extra: object) -> dict[str, object]:
    return {"command": "txt2img", "prompt": prompt, "width": 256, "height": 256, **extra}


# The rows QA found: two share a prompt, all three share a name.
SHARED = [row("n a", name="x"), row("n b", name="x"), row("n a", name="x")]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def drop_done_records(journal: Path) -> None:
    """As if the run was killed after writing its images but before journalling them."""
    kept = [line for line in journal.read_text().splitlines() if '"type": "done"' not in line]
    journal.write_text("\n".join(kept) + "\n")


@pytest.mark.parametrize("policy", ["overwrite", "skip", "fail"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_rows_sharing_a_name_are_refused_before_anything_is_sent(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, dry_run: bool
) -> None:
    jobs = write_jsonl(tmp_path / "j.jsonl", SHARED)
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "-j", "1", "--qps", "0", "--on-exists", policy]

    run = volccli(capsys, [*args, "--dry-run"] if dry_run else args)

    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{jobs}:1: this row, {jobs}:2 and {jobs}:3 would all write {out}/x.png" in line
    assert f"--on-exists {policy} cannot keep apart" in line
    assert "a name of its own" in line and "--on-exists suffix" in line
    assert run.out == ""
    assert box.stats()["billed"] == 0
    assert not out.exists()


def test_a_name_template_that_renders_several_rows_to_one_file_is_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each row makes two images; {index} tells apart the two of one row, not the rows.
    jobs = write_jsonl(
        tmp_path / "j.jsonl", [row("same", count=2), row("other"), row("same", count=2)]
    )
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "--on-exists", "fail", "--name", "{prompt}_{index}"]

    run = volccli(capsys, args)

    assert run.code == 2
    lines = [line for line in run.err.splitlines() if line.strip()]
    # One line per file the rows share, then the count of rows refused.
    assert f"{jobs}:1: this row and {jobs}:3 would both write {out}/same_0.png" in lines[0]
    assert f"{jobs}:1: this row and {jobs}:3 would both write {out}/same_1.png" in lines[1]
    assert "add {row} to --name" in lines[0]
    assert box.stats()["billed"] == 0

    # {row} makes every name its own: the same batch runs, one request per image.
    fixed = volccli(capsys, [*args[:-1], "{prompt}_{row}_{index}"])
    assert fixed.code == 0, fixed.err
    assert box.stats()["billed"] == 5
    assert len(images_in(out)) == 5


def test_a_suffix_row_beside_an_overwrite_row_of_the_same_name_is_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The overwrite row would replace the suffix row's image if it came second.
    jobs = write_jsonl(
        tmp_path / "j.jsonl", [row("a", name="hero"), row("b", name="hero", on_exists="overwrite")]
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{jobs}:1: this row and {jobs}:2 would both write" in line
    assert "--on-exists overwrite cannot keep apart" in line
    assert box.stats()["billed"] == 0


def test_with_keep_going_the_rows_sharing_a_name_stay_home_and_the_rest_run(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(tmp_path / "j.jsonl", [*SHARED, row("n c", name="y")])
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "--on-exists", "overwrite", "--keep-going"]

    run = volccli(capsys, [*args, "--json"])

    assert run.code == 9
    assert f"{jobs}:1: this row, {jobs}:2 and {jobs}:3 would all write" in run.err
    invalid = [r["row"] for r in run.records[:-1] if r["status"] == "invalid"]
    assert invalid[0] == 1 and set(invalid) <= {1, 2, 3}
    assert [r["row"] for r in run.records[:-1] if r["status"] == "ok"] == [4]
    assert box.stats()["billed"] == 1
    assert [path.name for path in images_in(out)] == ["y.png"]


def test_the_same_name_in_different_folders_is_no_clash(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "j.jsonl", [row("a", name="x", output_dir="one"), row("b", name="x")]
    )
    out = tmp_path / "out"
    run = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--on-exists", "overwrite"])
    assert run.code == 0, run.err
    assert images_in(out) == [out / "one" / "x.png", out / "x.png"]
    assert box.stats()["billed"] == 2


def test_names_from_the_answer_cannot_clash_and_are_not_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every request gets its own request id: unknown before sending, but never shared.
    jobs = write_jsonl(tmp_path / "j.jsonl", SHARED)
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "--on-exists", "overwrite"]
    run = volccli(capsys, [*args, "--name", "{request_id}"])
    assert run.code == 0, run.err
    assert len(images_in(out)) == 3
    assert box.stats()["billed"] == 3


def test_names_only_a_seed_the_server_draws_would_tell_apart_are_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png(tmp_path / "in.png")
    call = {"command": "call", "req_key": "jimeng_i2i_v30", "image": "in.png"}
    jobs = write_jsonl(tmp_path / "j.jsonl", [{**call, "prompt": "a"}, {**call, "prompt": "b"}])
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "--on-exists", "overwrite", "--name", "{seed}"]
    run = volccli(capsys, args)
    assert run.code == 2
    line = one_error_line(run.err)
    assert "drawn by the server, so {seed} is not known before sending" in line
    assert box.stats()["billed"] == 0


def test_with_suffix_shared_names_keep_every_image_and_a_rerun_finds_each_one(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "j.jsonl",
        [*SHARED, row("fixed", name="x", seed=5), row("fixed", name="x", seed=5)],
    )
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "-j", "3", "--qps", "0", "--json"]

    first = volccli(capsys, args)

    assert first.code == 0, first.err
    assert box.stats()["billed"] == 5
    written = {record["row"]: record["paths"] for record in first.records[:-1]}
    assert len({path for paths in written.values() for path in paths}) == 5
    assert {Path(path).name for paths in written.values() for path in paths} == {
        "x.png",
        "x-1.png",
        "x-2.png",
        "x-3.png",
        "x-4.png",
    }

    again = volccli(capsys, args)
    assert again.code == 0, again.err
    assert box.stats()["billed"] == 5
    assert {r["row"]: r["paths"] for r in again.records[:-1]} == written

    # Killed before the journal said done: each job still finds its own image by its
    # recipe, identical rows included, and nothing is paid for twice.
    drop_done_records(out / ".volccli-journal.jsonl")
    adopted = volccli(capsys, args)
    assert adopted.code == 0, adopted.err
    assert {r["status"] for r in adopted.records[:-1]} == {"skipped"}
    found = {r["row"]: r["paths"] for r in adopted.records[:-1]}
    # Rows 4 and 5 are one request (same prompt, same seed): either may take either image.
    assert sorted([found.pop(4), found.pop(5)]) == sorted([written[4], written[5]])
    assert found == {line: written[line] for line in (1, 2, 3)}
    assert box.stats()["billed"] == 5
    prompts = {
        line: json.loads(Path(f"{paths[0]}.json").read_text())["body"]["prompt"]
        for line, paths in written.items()
    }
    assert prompts == {1: "n a", 2: "n b", 3: "n a", 4: "fixed", 5: "fixed"}
    assert len(images_in(out)) == 5
