"""The batch journal: records, replay, torn lines, ownership, locking, finished outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from volccli.errors import ExitCode, InputError
from volccli.journal import Journal, batch_hash, batch_identity


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_records_replay_into_the_state_of_each_job(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    out = tmp_path / "a.png"
    out.write_bytes(b"image bytes")
    journal = Journal.open(path, "jobs.jsonl")
    journal.start("k1#0", identity="k1", row=1, index=0, seed=42)
    journal.task("k1#0", "7418048504813240370")
    journal.start("k2#0", identity="k2", row=2, index=0, seed=7)
    journal.done("k2#0", [(out, sha(out))])
    journal.close()

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["header", "start", "task", "start", "done"]
    assert records[0]["batch"] == "jobs.jsonl"
    assert records[0]["batch_hash"] == batch_hash(batch_identity("jobs.jsonl"))
    assert records[1]["row"] == 1 and records[1]["identity"] == "k1"

    again = Journal.open(path, "jobs.jsonl")
    try:
        first = again.state("k1#0")
        assert (first.started, first.seed, first.task_id, first.outputs) == (
            True,
            42,
            "7418048504813240370",
            None,
        )
        assert again.finished("k1#0") is None
        assert again.finished("k2#0") == [out]
        assert again.claimed() == {str(out)}
        assert not again.state("unknown").started
    finally:
        again.close()


def test_finished_needs_every_output_present_and_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    out.write_bytes(b"one")
    journal = Journal.open(tmp_path / "j.jsonl", "b.csv")
    try:
        journal.start("k#0", identity="k", row=3, index=0, seed=None)
        journal.done("k#0", [(out, sha(out))])
        assert journal.finished("k#0") == [out]
        out.write_bytes(b"edited by someone")
        assert journal.finished("k#0") is None
        out.unlink()
        assert journal.finished("k#0") is None
    finally:
        journal.close()


def test_a_lost_task_is_forgotten_but_a_failed_poll_keeps_it(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.jsonl", "b.jsonl")
    try:
        journal.task("a#0", "111")
        journal.failed("a#0", {"message": "still generating"})
        assert journal.state("a#0").task_id == "111"
        journal.failed("a#0", {"code": "expired"}, forget_task=True)
        assert journal.state("a#0").task_id == ""
    finally:
        journal.close()


def test_a_torn_last_line_is_ignored_and_the_next_record_starts_clean(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, "b.jsonl")
    journal.start("a#0", identity="a", row=1, index=0, seed=1)
    journal.close()
    with path.open("ab") as handle:
        handle.write(b'{"type": "done", "key": "a#0", "outp')  # killed mid-write
    journal = Journal.open(path, "b.jsonl")
    try:
        assert journal.state("a#0").outputs is None
        journal.task("a#0", "222")
    finally:
        journal.close()
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[-1])["task_id"] == "222"
    assert Journal.open(path, "b.jsonl").state("a#0").task_id == "222"


def test_a_journal_of_another_batch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    (tmp_path / "first.jsonl").write_text("{}\n")
    (tmp_path / "second.jsonl").write_text("{}\n")
    Journal.open(path, str(tmp_path / "first.jsonl")).close()
    with pytest.raises(InputError) as caught:
        Journal.open(path, str(tmp_path / "second.jsonl"))
    assert caught.value.exit_code == ExitCode.USAGE
    assert "first.jsonl" in caught.value.message
    assert "--journal" in caught.value.hint
    # The same file named another way is the same batch.
    Journal.open(path, str(tmp_path / "." / "first.jsonl")).close()


def test_two_batches_cannot_share_one_journal_at_once(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    first = Journal.open(path, "b.jsonl")
    try:
        with pytest.raises(InputError, match="another volccli batch"):
            Journal.open(path, "b.jsonl")
    finally:
        first.close()
    Journal.open(path, "b.jsonl").close()  # free again once the first is closed


def test_a_task_id_is_fsynced_at_once_finished_jobs_soon_and_start_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import time

    import volccli.journal as journal_module

    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, "jobs.jsonl")
    synced: list[list[str]] = []  # the record types on disk at each fsync
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append([json.loads(line)["type"] for line in path.read_text().splitlines()])
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    try:
        journal.start("k#0", identity="k", row=1, index=0, seed=1)
        assert synced == []
        journal.task("k#0", "task-1")
        assert synced == [["header", "start", "task"]]  # before task() returned
        journal.failed("k#0", {"code": 50500})
        journal.start("k#0", identity="k", row=1, index=0, seed=1)
        journal.done("k#0", [])
        # A background flush follows within FLUSH_DELAY, without another record.
        deadline = time.monotonic() + 50 * journal_module.FLUSH_DELAY
        while not any(types[-1] == "done" for types in synced):
            assert time.monotonic() < deadline, synced
            time.sleep(0.01)
        journal.failed("k#1", {"code": 50500})
    finally:
        journal.close()
    assert synced[-1][-1] == "failed"  # close flushed what was still waiting


def test_a_failed_flush_is_reported_by_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import volccli.journal as journal_module
    from volccli.errors import OutputError

    journal = Journal.open(tmp_path / "j.jsonl", "jobs.jsonl")

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    journal.done("k#0", [])
    with pytest.raises(OutputError) as info:
        journal.close()
    assert "cannot write the journal" in info.value.message
    assert "Input/output error" in info.value.message
