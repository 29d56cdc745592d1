"""`volccli batch` against the sandbox: rows, checks, results, resume, reports."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from tests.helpers_pipelines import (
    box,
    images_in,
    journal_records,
    png,
    size_of,
    volccli,
    write_jsonl,
)
from volccli.sandbox import Sandbox

__all__ = ["box"]  # the fixture, imported for pytest


def body_of(sandbox: Sandbox, prompt: str) -> dict:
    for entry in sandbox.stats()["recent"]:
        body = entry.get("body") or {}
        if body.get("prompt") == prompt or body.get("custom_prompt") == prompt:
            return body
    raise AssertionError(f"no request with prompt {prompt!r}")


def test_jsonl_rows_become_requests_with_flag_and_body_names(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = png(tmp_path / "photo.png", (96, 64))
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {
                "command": "txt2img",
                "prompt": "fox one",
                "width": 768,
                "height": 512,
                "steps": 20,
                "watermark_position": "top-left",
                "watermark": True,
                "seed": 11,
            },
            {
                "req_key": "high_aes_general_v14",
                "prompt": "fox two",
                "ddim_steps": 12,
                "use_rephraser": False,
                "logo_info": {"add_logo": True, "position": 2},
                "custom_field": "kept",
                "name": "second",
                "count": 2,
            },
            {
                "command": "edit",
                "image": "photo.png",
                "prompt": "make it blue",
                "output_dir": "edits",
            },
        ],
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--json"])
    assert run.code == 0, run.err
    *results, summary = run.records
    assert summary["summary"]["ok"] == 4 and summary["summary"]["exit_code"] == 0
    assert sorted((r["row"], r["index"]) for r in results) == [(1, 0), (2, 0), (2, 1), (3, 0)]
    assert all(r["status"] == "ok" and len(r["paths"]) == 1 for r in results)

    first = body_of(box, "fox one")
    assert (first["width"], first["height"], first["ddim_steps"], first["seed"]) == (
        768,
        512,
        20,
        11,
    )
    assert first["logo_info"] == {"add_logo": True, "position": 2}
    second = body_of(box, "fox two")
    assert second["ddim_steps"] == 12 and second["use_rephraser"] is False
    assert second["logo_info"] == {"add_logo": True, "position": 2}
    assert second["custom_field"] == "kept"

    by_row = {(r["row"], r["index"]): Path(r["paths"][0]) for r in results}
    assert size_of(by_row[1, 0]) == (768, 512)
    edited = by_row[3, 0]
    assert edited.parent == tmp_path / "out" / "edits"
    assert size_of(edited) == (96, 64)  # edit keeps the input's size
    assert [r["name"] for r in results if r["row"] == 2] == ["second", "second"]
    sidecar = json.loads(Path(f"{edited}.json").read_text())
    assert (
        sidecar["inputs"][0]["sha256"]
        == __import__("hashlib").sha256(photo.read_bytes()).hexdigest()
    )


def test_a_row_name_names_its_files_unless_name_is_set(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "named hero", "name": "hero"},
            {"command": "txt2img", "prompt": "named fox", "name": "fox", "count": 2},
            {"command": "txt2img", "prompt": "unnamed owl", "seed": 7},
        ],
    )

    def names(out: Path, *extra: str) -> list[str]:
        run = volccli(capsys, ["batch", str(jobs), "-o", str(out), *extra])
        assert run.code == 0, run.err
        return sorted(Path(line).name for line in run.out.splitlines())

    assert names(tmp_path / "rows") == [
        "fox_0.png",
        "fox_1.png",
        "hero.png",
        "txt2img_unnamed-owl_7.png",
    ]
    # --name on the command line wins over the rows' names ...
    flagged = names(tmp_path / "flag", "--name", "{prompt}")
    assert "hero.png" not in flagged and "named-hero.png" in flagged
    # ... and so does a naming scheme in the profile.
    config = Path(os.environ["VOLCCLI_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    profile = '[profiles.default]\nname = "p_{prompt}"\n'
    (config / "config.toml").write_text(profile, encoding="utf-8")
    profiled = names(tmp_path / "profile")
    assert "p_named-hero.png" in profiled and "hero.png" not in profiled


def test_csv_rows_are_typed_from_text(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "command,prompt,width,height,rephraser,seed,logo_info.add_logo,name\n"
        'txt2img,"csv fox, with a comma",640,384,false,5,true,a\n'
        "txt2img,csv owl,,,,,,b\n",
        encoding="utf-8",
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--name", "{name}"])
    assert run.code == 0, run.err
    assert sorted(Path(line).name for line in run.out.splitlines()) == ["a.png", "b.png"]
    body = body_of(box, "csv fox, with a comma")
    assert (body["width"], body["height"], body["use_rephraser"], body["seed"]) == (
        640,
        384,
        False,
        5,
    )
    assert body["logo_info"] == {"add_logo": True}
    assert size_of(tmp_path / "out" / "a.png") == (640, 384)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("semicolons.csv", 'command;prompt;seed\ntxt2img;"owl; at night, quietly";8\n'),
        ("tabs.tsv", "command\tprompt\tseed\ntxt2img\towl; at night, quietly\t8\n"),
        ("spreadsheet.csv", '\ufeffcommand,prompt,seed\r\ntxt2img,"owl; at night, quietly",8\r\n'),
    ],
)
def test_csv_separators_are_read_off_the_header(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    jobs = tmp_path / name
    jobs.write_text(text, encoding="utf-8")
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--json"])
    assert run.code == 0, run.err
    body = body_of(box, "owl; at night, quietly")
    assert body["seed"] == 8


def test_every_bad_row_is_listed_with_its_line_and_nothing_is_sent(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "command,prompt,steps,image,width\n"
        "txt2img,fine,10,,\n"
        "txt2img,too many steps,60,,\n"
        "edit,recolour,,missing.png,\n"
        "paint,unknown command,,,\n"
        "txt2img,,,,\n"
        "txt2img,bad width,,,wide\n",
        encoding="utf-8",
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    lines = [line for line in run.err.splitlines() if f"{jobs}:" in line]
    assert [line.split(f"{jobs}:")[1].split(":")[0] for line in lines] == [
        "3",
        "4",
        "5",
        "6",
        "7",
    ]
    assert "60 is outside [1, 50]" in lines[0]
    assert "missing.png: no such file" in lines[1]
    assert "unknown command 'paint'" in lines[2]
    assert "needs PROMPT" in lines[3]
    assert "'wide' is not an integer" in lines[4]
    assert "5 rows are invalid" in run.err and "--keep-going" in run.err
    assert "Traceback" not in run.err
    assert box.stats()["requests"] == {}
    assert not (tmp_path / "out").exists()


def test_malformed_jsonl_lines_are_reported(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"command": "txt2img", "prompt": "ok"}\n\n# a comment\n{"command": \n[1, 2]\n'
        '{"prompt": "no command"}\nnull\n',
        encoding="utf-8",
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 2
    assert f"{jobs}:4: not JSON" in run.err
    assert f"{jobs}:5: a list, not a JSON object" in run.err
    assert f"{jobs}:6: the row has no command or req_key" in run.err
    assert f"{jobs}:7: null, not a JSON object" in run.err
    assert box.stats()["requests"] == {}


def test_a_json_array_or_objects_over_several_lines_are_read_too(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    array = tmp_path / "jobs.json"
    array.write_text(
        '[\n  {"command": "txt2img", "prompt": "array fox", "seed": 1},\n'
        '  {"command": "txt2img",\n   "prompt": "array owl", "seed": 2}\n]\n',
        encoding="utf-8",
    )
    run = volccli(capsys, ["batch", str(array), "-o", str(tmp_path / "a"), "--json"])
    assert run.code == 0, run.err
    # Rows finish in any order; each reports the line its object starts on.
    assert {r["seed"]: r["row"] for r in run.records[:-1]} == {1: 2, 2: 3}
    pretty = tmp_path / "pretty.jsonl"
    pretty.write_text('{\n  "command": "txt2img",\n  "prompt": "pretty fox"\n}\n')
    assert volccli(capsys, ["batch", str(pretty), "-o", str(tmp_path / "p")]).code == 0
    assert body_of(box, "array owl")["seed"] == 2 and body_of(box, "pretty fox")

    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"command": "txt2img", "prompt": "a"},\n  {"prompt": "b"\n]\n')
    before = box.stats()["billed"]
    run = volccli(capsys, ["batch", str(broken), "-o", str(tmp_path / "b")])
    assert run.code == 2
    assert f"{broken}:4: not a JSON array of objects" in run.err, run.err
    assert box.stats()["billed"] == before


def test_keep_going_sends_the_valid_rows_and_exits_9(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "good"},
            {"command": "txt2img", "prompt": "x", "scale": 99},
        ],
    )
    run = volccli(
        capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--keep-going", "--json"]
    )
    assert run.code == 9
    *results, summary = run.records
    invalid = [r for r in results if r["row"] == 2]
    assert invalid[0]["status"] == "invalid" and invalid[0]["exit_code"] == 2
    assert "outside" in invalid[0]["message"]
    assert [r["status"] for r in results if r["row"] == 1] == ["ok"]
    assert summary["summary"]["invalid"] == 1 and summary["summary"]["ok"] == 1
    assert len(images_in(tmp_path / "out")) == 1


def test_an_empty_batch_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "empty.jsonl"
    jobs.write_text("\n\n", encoding="utf-8")
    run = volccli(capsys, ["batch", str(jobs)])
    assert run.code == 2
    assert "has no jobs" in run.err


def test_bad_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = write_jsonl(tmp_path / "j.jsonl", [{"command": "txt2img", "prompt": "p"}])
    assert volccli(capsys, ["batch", str(jobs), "-j", "0"]).code == 2
    assert volccli(capsys, ["batch", str(jobs), "--qps", "-1"]).code == 2
    assert volccli(capsys, ["batch", str(jobs), "--format", "xml"]).code == 2
    run = volccli(capsys, ["batch", str(jobs), "-o", "-"])
    assert run.code == 2 and "writes files" in run.err
    assert volccli(capsys, ["batch", str(tmp_path / "nope.jsonl")]).code == 2


def test_stdin_batch_with_format_override(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "command,prompt\ntxt2img,from stdin\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    run = volccli(capsys, ["batch", "-", "--format", "csv", "-o", str(tmp_path / "out"), "-0"])
    assert run.code == 0, run.err
    paths = [p for p in run.out.split("\0") if p]
    assert len(paths) == 1 and Path(paths[0]).exists()


def test_a_rerun_skips_finished_jobs_and_force_redoes_them(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [{"command": "txt2img", "prompt": f"resume {n}"} for n in range(3)],
    )
    out = tmp_path / "out"
    first = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--json"])
    assert first.code == 0
    assert box.stats()["billed"] == 3
    written = sorted(images_in(out))

    again = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--json"])
    assert again.code == 0
    *results, summary = again.records
    assert {r["status"] for r in results} == {"skipped"}
    assert sorted(Path(r["paths"][0]) for r in results) == written
    assert box.stats()["billed"] == 3  # nothing requested again
    assert summary["summary"]["skipped"] == 3
    plain = volccli(capsys, ["batch", str(jobs), "-o", str(out)])
    assert sorted(Path(line) for line in plain.out.splitlines()) == written  # still listed

    written[0].write_bytes(written[0].read_bytes() + b"\0")  # changed: no longer done
    third = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--json"])
    assert sorted(r["status"] for r in third.records[:-1]) == ["ok", "skipped", "skipped"]
    assert box.stats()["billed"] == 4

    forced = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--force", "--json"])
    assert {r["status"] for r in forced.records[:-1]} == {"ok"}
    assert box.stats()["billed"] == 7
    kinds = [r["type"] for r in journal_records(out / ".volccli-journal.jsonl")]
    assert kinds[0] == "header" and kinds.count("done") == 3 + 1 + 3


def test_a_journal_of_another_batch_file_stops_before_sending(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    one = write_jsonl(tmp_path / "one.jsonl", [{"command": "txt2img", "prompt": "one"}])
    two = write_jsonl(tmp_path / "two.jsonl", [{"command": "txt2img", "prompt": "two"}])
    assert volccli(capsys, ["batch", str(one), "-o", str(out)]).code == 0
    billed = box.stats()["billed"]
    run = volccli(capsys, ["batch", str(two), "-o", str(out)])
    assert run.code == 2
    assert "belongs to another batch file" in run.err and "--journal" in run.err
    assert box.stats()["billed"] == billed
    other = volccli(
        capsys, ["batch", str(two), "-o", str(out), "--journal", str(tmp_path / "two.journal")]
    )
    assert other.code == 0


def test_fail_fast_starts_no_new_job_after_a_failure(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"command": "txt2img", "prompt": "volccli-fault:50400 refused"}]
    rows += [{"command": "txt2img", "prompt": f"after {n}"} for n in range(10)]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    run = volccli(
        capsys,
        ["batch", str(jobs), "-o", str(tmp_path / "out"), "-j", "1", "--fail-fast", "--json"],
    )
    assert run.code == 9
    *results, summary = run.records
    assert [(r["row"], r["status"]) for r in results] == [(1, "failed")]
    assert results[0]["code"] == 50400 and results[0]["exit_code"] == 4
    assert summary["summary"]["not_started"] == 10
    assert box.stats()["billed"] == 0


def test_without_fail_fast_a_failure_exits_9_after_all_jobs(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"command": "txt2img", "prompt": f"job {n}"} for n in range(4)]
    rows.insert(2, {"command": "txt2img", "prompt": "volccli-fault:50411 input audit"})
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 9
    assert len(run.out.splitlines()) == 4  # the four written paths
    assert f"{jobs}:3:" in run.err and "50411" in run.err
    assert "4 ok, 1 failed" in run.err


def test_github_step_summary_gets_a_markdown_table(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary_file = tmp_path / "summary.md"
    summary_file.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "summary fox", "name": "fox"},
            {"command": "txt2img", "prompt": "volccli-fault:50412 bad | pipe", "name": "bad"},
        ],
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 9
    text = summary_file.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")  # appended, not replaced
    assert f"### volccli batch `{jobs}`" in text
    assert "| row | name | status | output | request id |" in text
    fox = images_in(tmp_path / "out")[0]
    assert f"| 1 | fox | ok | `{fox}` |" in text
    assert "#### Failures" in text
    failure = next(line for line in text.splitlines() if line.startswith("| 2 | bad |"))
    assert "50412" in failure
    assert "1 ok, 1 failed" in text


def test_plain_progress_and_summary_on_stderr(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "p"}])
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")])
    assert run.code == 0
    assert f"batch {jobs}: 1 ok; 1 image in" in run.err
    quiet = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out2"), "-q"])
    assert quiet.code == 0 and quiet.err == ""


def test_dry_run_checks_and_shows_without_sending(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "dry", "count": 2}]
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "--dry-run", "--json"])
    assert run.code == 0, run.err
    shown = run.records
    assert len(shown) == 2 and shown[0]["body"]["prompt"] == "dry"
    assert box.stats()["requests"] == {}
    assert not (tmp_path / "out").exists()


def test_defaults_from_the_command_line_apply_to_every_row(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "defaults a", "name": "a"},
            {"command": "txt2img", "prompt": "defaults b", "name": "b", "scale": 4},
        ],
    )
    run = volccli(
        capsys,
        [
            "batch",
            str(jobs),
            "-o",
            str(tmp_path / "out"),
            "--name",
            "{name}-{index}",
            "--set",
            "scale=6",
            "--set",
            "extra=1",
            "--no-sidecar",
        ],
    )
    assert run.code == 0, run.err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a-0.png",
        "b-0.png",
    ]
    assert body_of(box, "defaults a")["scale"] == 6
    assert body_of(box, "defaults b")["scale"] == 6  # --set wins, as on the command line
    assert body_of(box, "defaults b")["extra"] == 1
