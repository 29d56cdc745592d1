"""Batch input that must be refused, or read as written: foreign journals, literal
prompts, prompt files, broken CSV quoting, repeated JSON keys, numbers as text, piped
batches sharing a folder, and rates too slow to wait for."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from tests.helpers_pipelines import box, images_in, journal_records, png, volccli, write_jsonl
from volccli.batchfile import read_batch
from volccli.errors import InputError
from volccli.journal import Journal
from volccli.sandbox import Sandbox

__all__ = ["box"]  # the fixture, imported for pytest


def bodies(sandbox: Sandbox) -> list[dict]:
    return [entry.get("body") or {} for entry in sandbox.stats()["recent"]]


def nothing_sent(sandbox: Sandbox) -> bool:
    return sandbox.stats()["requests"] == {}


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def stdin_of(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


# --- the journal is never another file -------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "text", "batch file"])
def test_a_journal_path_naming_another_file_is_refused_and_left_unchanged(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    jobs = write_jsonl(tmp_path / "b.jsonl", [{"command": "txt2img", "prompt": "a red fox"}])
    if kind == "png":
        target = png(tmp_path / "holiday.png")
    elif kind == "text":
        target = tmp_path / "notes.txt"
        target.write_bytes(b"shopping list\nno newline at the end")
    else:
        target = jobs
    before = target.read_bytes()
    out = tmp_path / "out"

    run = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--journal", str(target)])

    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{target} is not a volccli journal" in line and "--journal" in line
    assert target.read_bytes() == before  # not even a newline appended
    assert nothing_sent(box)
    assert not out.exists()


def test_an_empty_file_becomes_the_journal_and_a_journal_resumes(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(tmp_path / "b.jsonl", [{"command": "txt2img", "prompt": "empty ok"}])
    journal = tmp_path / "run.journal"
    journal.write_bytes(b"")
    args = ["batch", str(jobs), "-o", str(tmp_path / "out"), "--journal", str(journal)]
    assert volccli(capsys, args).code == 0
    assert [r["type"] for r in journal_records(journal)] == ["header", "start", "done"]
    again = volccli(capsys, [*args, "--json"])
    assert again.code == 0 and again.records[0]["status"] == "skipped"
    assert box.stats()["billed"] == 1


def test_a_journal_of_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    text = json.dumps({"type": "header", "schema": "volccli.journal/9", "batch": "b"}) + "\n"
    path.write_text(text)
    with pytest.raises(InputError, match=r"another volccli version \(volccli.journal/9\)"):
        Journal.open(path, "b.jsonl")
    assert path.read_text() == text


# --- a row's text is sent as written ----------------------------------------------------


def test_prompts_starting_with_at_or_a_lone_dash_are_sent_literally(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photo = png(tmp_path / "photo.png", (96, 64))
    secret = tmp_path / "hostname"
    secret.write_text("do-not-send")
    stdin_of(monkeypatch, "from stdin, not to be read")
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "@home sweet home"},
            {"command": "txt2img", "prompt": f"@{secret}"},
            {"command": "txt2img", "prompt": "-"},
            {"command": "edit", "image": "photo.png", "prompt": "@@twice", "negative": "-"},
            {
                "command": "product-style",
                "product": photo.name,
                "ref": photo.name,
                "prompt": "@studio",
                "negative_prompt": f"@{secret}",
            },
        ],
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--json"])
    assert run.code == 0, run.err
    sent = bodies(box)
    prompts = {body.get("prompt") or body.get("positive_prompt") for body in sent}
    assert prompts == {"@home sweet home", f"@{secret}", "-", "@@twice", "@studio"}
    negatives = {body.get("negative_prompt") for body in sent} - {None}
    assert negatives == {"-", f"@{secret}"}
    assert not any("do-not-send" in json.dumps(body) for body in sent)
    assert sys.stdin.read() == "from stdin, not to be read"  # stdin left alone


def test_a_row_image_of_dash_is_refused_and_stdin_left_alone(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    png(tmp_path / "photo.png", (96, 64))
    stdin_of(monkeypatch, "not an image")
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "edit", "image": "photo.png", "prompt": "fine"},
            {"command": "edit", "image": "-", "prompt": "from stdin"},
            {"command": "controlnet", "prompt": "pose", "control": "pose:-"},
        ],
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert f"{jobs}:2: IMAGE '-' cannot read stdin in a batch row" in run.err
    assert f"{jobs}:3: --control '-' cannot read stdin in a batch row" in run.err
    assert "the image's path (relative to the batch file)" in run.err
    assert nothing_sent(box)
    assert sys.stdin.read() == "not an image"


def test_a_csv_prompt_is_literal_too(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("command,prompt\ntxt2img,@mentions and all\n")
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 0, run.err
    assert [body["prompt"] for body in bodies(box)] == ["@mentions and all"]


def test_prompt_file_reads_text_beside_the_batch_file(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "batches"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "fox.txt").write_text("a fox read from a file\n")
    (folder / "avoid.txt").write_text("blur, text")
    png(folder / "photo.png")
    jobs = write_jsonl(
        folder / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt_file": "prompts/fox.txt", "seed": 1},
            {
                "command": "edit",
                "image": "photo.png",
                "prompt": "make it blue",
                "negative_prompt_file": "avoid.txt",
            },
        ],
    )
    # Run from elsewhere: the names are relative to the batch file, not the cwd.
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 0, run.err
    sent = bodies(box)
    assert {body.get("prompt") for body in sent} == {"a fox read from a file", "make it blue"}
    assert [body["negative_prompt"] for body in sent if "negative_prompt" in body] == ["blur, text"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("../outside.txt", "is outside the batch file's folder"),
        ("{outside}", "is outside the batch file's folder"),
        ("~/outside.txt", "is outside the batch file's folder"),
        ("link.txt", "is outside the batch file's folder"),
        ("missing.txt", "cannot read"),
        ("empty.txt", "is empty"),
        ("", "must be a file name"),
    ],
)
def test_prompt_file_outside_the_batch_folder_or_unreadable_is_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, words: str
) -> None:
    folder = tmp_path / "batches"
    folder.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    (folder / "link.txt").symlink_to(outside)
    (folder / "empty.txt").write_text(" \n")
    value = value.format(outside=outside)
    jobs = write_jsonl(folder / "jobs.jsonl", [{"command": "txt2img", "prompt_file": value}])
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{jobs}:1: prompt_file" in line and words in line
    assert nothing_sent(box)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"prompt": "x", "prompt_file": "p.txt"}, "prompt and prompt_file both give prompt"),
        ({"prompt": "x", "steps": 20, "ddim_steps": 30}, "steps and ddim_steps name the same"),
        ({"prompt": 42}, "prompt 42 is not text"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "a \udc80 b"}, "lone UTF-16 surrogate"),
    ],
)
def test_rows_giving_one_field_twice_or_bad_text_are_refused(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], row: dict, words: str
) -> None:
    (tmp_path / "p.txt").write_text("from a file")
    jobs = tmp_path / "jobs.jsonl"
    # ensure_ascii keeps a lone surrogate as the \udc80 escape, as another tool would write it
    jobs.write_text(json.dumps({"command": "txt2img", **row}) + "\n")
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert words in one_error_line(run.err)
    assert nothing_sent(box)


# --- broken CSV and JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            'command,prompt\ntxt2img,"a fox\nover two lines"\ntxt2img,"unclosed\n'
            "txt2img,a cat\ntxt2img,a dog\n",
            4,
            "never closed",
        ),
        ('command,prompt\ntxt2img,"quoted"then more\ntxt2img,ok\n', 2, "malformed CSV"),
    ],
)
@pytest.mark.parametrize("keep_going", [False, True])
def test_broken_csv_quoting_refuses_the_whole_file_with_its_line(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    where: int,
    words: str,
    keep_going: bool,
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(text)
    args = ["batch", str(jobs), "-o", str(tmp_path / "out")]
    run = volccli(capsys, [*args, "--keep-going"] if keep_going else args)
    assert run.code == 2
    line = one_error_line(run.err)
    assert f"{jobs}:{where}: " in line and words in line and "nothing was sent" in line
    assert nothing_sent(box)


def test_a_quoted_value_over_several_lines_is_still_one_value(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text('command,prompt\ntxt2img,"first line\nsecond ""quoted"" line"\n')
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 0, run.err
    assert [body["prompt"] for body in bodies(box)] == ['first line\nsecond "quoted" line']


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            '{"command": "txt2img", "prompt": "ok"}\n'
            '{"command": "txt2img", "prompt": "a", "prompt": "b"}\n',
            2,
            "the key 'prompt' appears twice",
        ),
        (
            '{"command": "txt2img", "prompt": "a",\n'
            ' "logo_info": {"add_logo": true, "add_logo": false}}\n',
            1,
            "the key 'add_logo' appears twice",
        ),
        (
            '[\n {"command": "txt2img", "prompt": "ok"},\n'
            ' {"command": "txt2img", "seed": 1, "seed": 2, "prompt": "x"}\n]\n',
            3,
            "the key 'seed' appears twice",
        ),
        ('{"command": "txt2img", "prompt": "a", "scale": NaN}\n', 1, "NaN is not a JSON number"),
    ],
)
def test_repeated_keys_and_non_numbers_in_json_are_refused_by_line(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    where: int,
    words: str,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(text)
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert f"{jobs}:{where}: {words}" in one_error_line(run.err)
    assert nothing_sent(box)


def test_a_line_that_is_not_json_says_so_even_with_a_repeated_key() -> None:
    text = '{"command": "txt2img", "prompt": "a", "prompt": "b"\n'
    batch = read_batch("-", "jsonl", lambda: text.encode())
    assert [(p.line, p.message.split(" (")[0]) for p in batch.problems] == [(1, "not JSON")]


# --- numbers written as text -------------------------------------------------------------


def test_numbers_and_booleans_as_text_in_json_are_read_like_csv(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    as_text = {"width": "768", "height": " 512 ", "scale": "3.5", "seed": "7", "count": "2"}
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "typed", **as_text, "use_rephraser": "false"},
            {"command": "txt2img", "prompt": "csv-like", "count": 2.0, "steps": "20.0"},
        ],
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--json"])
    assert run.code == 0, run.err
    typed = [body for body in bodies(box) if body["prompt"] == "typed"]
    assert sorted(body["seed"] for body in typed) == [7, 8]
    first = typed[0]
    assert (first["width"], first["height"], first["scale"]) == (768, 512, 3.5)
    assert first["use_rephraser"] is False
    assert [body["ddim_steps"] for body in bodies(box) if body["prompt"] == "csv-like"] == [20, 20]
    assert len(images_in(tmp_path / "out")) == 4


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("count", "2.5", "count '2.5' is not a whole number"),
        ("count", "0", "count '0' is not a whole number of at least 1"),
        ("count", True, "count True is not a whole number"),
        ("steps", "1_000", "steps '1_000' is not an integer"),
        ("seed", "٣", "is not an integer"),
        ("scale", "nan", "scale 'nan' is not a number"),
        ("scale", "1e999", "scale '1e999' is not a number"),
        ("scale", 1e999, "scale is not a finite number, which JSON cannot carry"),
    ],
)
def test_numbers_that_are_not_plain_numbers_are_refused(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    words: str,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    row = {"command": "txt2img", "prompt": "p", field: value}
    jobs.write_text(json.dumps(row, ensure_ascii=False).replace("Infinity", "1e999") + "\n")
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert words in one_error_line(run.err)
    assert nothing_sent(box)


# --- batches piped in ----------------------------------------------------------------------


def test_two_different_piped_batches_cannot_share_a_folder(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    first = '{"command": "txt2img", "prompt": "piped one"}\n'
    stdin_of(monkeypatch, first)
    assert volccli(capsys, ["batch", "-", "-o", str(out)]).code == 0

    stdin_of(monkeypatch, '{"command": "txt2img", "prompt": "piped two"}\n')
    run = volccli(capsys, ["batch", "-", "-o", str(out)])
    assert run.code == 2
    line = one_error_line(run.err)
    assert "belongs to another batch file (<stdin>, with other content)" in line
    assert box.stats()["billed"] == 1

    stdin_of(monkeypatch, first)  # the same batch again resumes
    again = volccli(capsys, ["batch", "-", "-o", str(out), "--json"])
    assert again.code == 0 and again.records[0]["status"] == "skipped"
    assert box.stats()["billed"] == 1


# --- the request rate ------------------------------------------------------------------------


@pytest.mark.parametrize("qps", ["1e-300", "0.0009"])
def test_a_rate_too_slow_to_wait_for_is_refused_up_front(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], qps: str
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": f"slow {n}"} for n in range(2)]
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--qps", qps])
    assert run.code == 2
    line = one_error_line(run.err)
    assert "--qps" in line and "at least 0.001" in line and "0 (no limit)" in line
    assert nothing_sent(box)
    assert not (tmp_path / "out").exists()


def test_a_too_slow_rate_from_the_environment_is_a_config_error(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "env"}])
    monkeypatch.setenv("VOLCCLI_QPS", "1e-9")
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 3
    line = one_error_line(run.err)
    assert "VOLCCLI_QPS=1e-9" in line and "unset it" in line
    assert nothing_sent(box)
    # A bad setting is refused whatever the flags say (README: "used or not"); without
    # it, the slowest allowed rate runs.
    monkeypatch.delenv("VOLCCLI_QPS")
    slowest = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--qps", "0.001"])
    assert slowest.code == 0, slowest.err
    assert box.stats()["billed"] == 1
