"""The request history: rows from commands and batches, queries, concurrency, failures."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.helpers_pipelines import PYTHON, box, png, subprocess_env, volccli, write_jsonl
from volccli.history import db_path, query
from volccli.sandbox import API_KEY, Sandbox

__all__ = ["box"]


def test_a_command_records_one_row_without_image_data_or_secrets(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = png(tmp_path / "photo.png", (80, 60))
    run = volccli(capsys, ["edit", str(photo), "paint it teal", "-o", str(tmp_path), "--json"])
    assert run.code == 0, run.err
    (written,) = run.records
    (row,) = query(db_path())
    assert row["command"] == "edit" and row["req_key"] == "byteedit_v2.0"
    assert row["outcome"] == "ok" and row["exit_code"] == 0
    assert row["prompt"] == "paint it teal"
    assert row["request_id"] == written["request_id"]
    assert row["seed"] == written["seed"] and row["params"]["seed"] == written["seed"]
    assert row["outputs"] == [{"path": written["path"], "sha256": written["sha256"]}]
    assert len(row["request_hash"]) == 64
    (image,) = row["params"]["binary_data_base64"]
    assert image["source"] == str(photo) and len(image["sha256"]) == 64
    raw = b"".join(p.read_bytes() for p in db_path().parent.iterdir() if p.is_file())
    assert API_KEY.encode() not in raw
    assert len(raw) < 200_000  # hashes, not base64 of the image


def test_failures_and_retries_are_recorded(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = volccli(capsys, ["txt2img", "volccli-fault:50412 nope", "-o", str(tmp_path)])
    assert refused.code == 5
    retried = volccli(capsys, ["txt2img", "volccli-fault:50429x1 later", "-o", str(tmp_path)])
    assert retried.code == 0
    newest, oldest = query(db_path())
    assert (oldest["outcome"], oldest["error_code"], oldest["exit_code"]) == ("failed", "50412", 5)
    assert oldest["outputs"] == []
    assert newest["outcome"] == "ok" and newest["retries"] == 1
    assert "50429" in newest["retry_reasons"][0]


def test_no_log_records_nothing(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert volccli(capsys, ["txt2img", "private", "-o", str(tmp_path), "--no-log"]).code == 0
    jobs = write_jsonl(tmp_path / "j.jsonl", [{"command": "txt2img", "prompt": "also"}])
    assert volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "b"), "--no-log"]).code == 0
    assert query(db_path()) == []


def test_batch_jobs_are_recorded_with_their_file_and_row(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "j.jsonl",
        [{"command": "txt2img", "prompt": "row one"}, {"command": "txt2img", "prompt": "row two"}],
    )
    assert volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out")]).code == 0
    rows = query(db_path())
    assert sorted((r["row"], r["prompt"]) for r in rows) == [(1, "row one"), (2, "row two")]
    assert {r["batch"] for r in rows} == {str(jobs)}


def test_history_command_lists_newest_first_searches_and_prints_json(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for prompt in ("first heron", "second crane", "third heron"):
        assert volccli(capsys, ["txt2img", prompt, "-o", str(tmp_path)]).code == 0
    listing = volccli(capsys, ["history"])
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert ["third heron" in lines[0], "second crane" in lines[1], "first heron" in lines[2]] == [
        True,
        True,
        True,
    ]
    assert all(" ok " in line and str(tmp_path) in line for line in lines)
    found = volccli(capsys, ["history", "--search", "heron", "--json"])
    assert [r["prompt"] for r in found.records] == ["third heron", "first heron"]
    limited = volccli(capsys, ["history", "-n", "1", "--json"])
    assert [r["prompt"] for r in limited.records] == ["third heron"]
    by_path = volccli(
        capsys, ["history", "--search", found.records[1]["outputs"][0]["path"], "--json"]
    )
    assert [r["prompt"] for r in by_path.records] == ["first heron"]
    by_id = volccli(capsys, ["history", "--search", found.records[0]["request_id"], "--json"])
    assert [r["prompt"] for r in by_id.records] == ["third heron"]
    none = volccli(capsys, ["history", "--search", "no such thing"])
    assert none.code == 0 and none.out == "" and "no matching" in none.err
    assert volccli(capsys, ["history", "-n", "-1"]).code == 2


def test_history_path_is_under_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLCCLI_DATA_DIR", str(tmp_path / "data"))
    run = volccli(capsys, ["history", "path"])
    assert run.code == 0
    assert run.out.strip() == str(tmp_path / "data" / "history.db")
    empty = volccli(capsys, ["history"])
    assert empty.code == 0 and "empty" in empty.err


def test_an_unwritable_history_warns_once_and_the_generation_goes_on(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("VOLCCLI_DATA_DIR", str(blocker / "data"))
    jobs = write_jsonl(
        tmp_path / "j.jsonl", [{"command": "txt2img", "prompt": f"p{n}"} for n in range(3)]
    )
    run = volccli(capsys, ["batch", str(jobs), "-o", str(tmp_path / "out"), "-j", "1"])
    assert run.code == 0, run.err
    assert len(run.out.splitlines()) == 3
    assert run.err.count("cannot write the history") == 1
    assert f"({blocker} is a file, not a folder)" in run.err and "VOLCCLI_DATA_DIR" in run.err
    single = volccli(capsys, ["txt2img", "still works", "-o", str(tmp_path / "one")])
    assert single.code == 0 and single.err.count("cannot write the history") == 1
    listing = volccli(capsys, ["history"])
    assert listing.code == 3 and listing.out == ""
    assert f"{blocker} is a file, not a folder" in listing.err
    assert "VOLCCLI_DATA_DIR" in listing.err and len(listing.err.splitlines()) == 1


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from pathlib import Path
    from volccli import history

    path, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for n in range(count):
        now = datetime.now(timezone.utc).isoformat()
        history.write(path, {"time": now, "command": "txt2img", "prompt": f"{name}-{n}",
                             "params": {"prompt": f"{name}-{n}"}, "outcome": "ok",
                             "outputs": [], "retry_reasons": []})
    """
)


def test_several_processes_writing_at_once_lose_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    writers, each = 5, 60
    children = [
        subprocess.Popen(
            [PYTHON, "-c", WRITER, str(path), f"w{n}", str(each)],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
        )
        for n in range(writers)
    ]
    errors = []
    for child in children:
        _, err = child.communicate(timeout=120)
        if child.returncode:
            errors.append(err.decode())
    assert errors == []
    rows = query(path, limit=0)
    assert len(rows) == writers * each
    assert {r["prompt"] for r in rows} == {f"w{n}-{i}" for n in range(writers) for i in range(each)}
    from volccli.history import connect

    with connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
