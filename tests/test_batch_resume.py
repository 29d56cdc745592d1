"""Resuming after a crash: kill -9 in the middle of a batch, then run it again."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers_pipelines import (
    box,
    images_in,
    journal_records,
    kill_batch_after,
    png,
    subprocess_env,
    volccli,
    write_jsonl,
)
from volccli.sandbox import Sandbox

__all__ = ["box"]
JOBS = 40
WORKERS = 4


def test_kill_9_mid_batch_then_rerun_writes_each_output_once(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [{"command": "txt2img", "prompt": f"crash test {n}", "name": f"n{n}"} for n in range(JOBS)],
    )
    out = tmp_path / "out"
    journal = out / ".volccli-journal.jsonl"
    box.configure(latency=0.08)
    args = ["batch", str(jobs), "-o", str(out), "-j", str(WORKERS), "--qps", "0"]
    kill_batch_after(args, subprocess_env(), journal, done=10, timeout=30)
    finished_before = {r["key"] for r in journal_records(journal) if r["type"] == "done"}
    assert 10 <= len(finished_before) < JOBS
    time.sleep(0.3)  # requests in flight at the kill are still billed by the server
    billed_first = box.stats()["billed"]

    run = volccli(capsys, [*args, "--json"])
    assert run.code == 0, run.err
    *_results, summary = run.records
    assert summary["summary"]["ok"] + summary["summary"]["skipped"] == JOBS

    written = images_in(out)
    assert len(written) == JOBS
    assert not [p for p in written if p.stem.rsplit("_", 1)[-1].count("-")]  # no -1 copies
    prompts = Counter(json.loads(Path(f"{p}.json").read_text())["body"]["prompt"] for p in written)
    assert prompts == Counter(f"crash test {n}" for n in range(JOBS))

    stats = box.stats()
    assert stats["billed"] <= JOBS + WORKERS
    # Nothing the first run finished was asked for again; of the rest, some may have
    # been written just before the kill and are adopted instead of being paid twice.
    second = stats["billed"] - billed_first
    assert JOBS - len(finished_before) - WORKERS <= second <= JOBS - len(finished_before)
    resent = [body for body, count in stats["billed_by_body"].items() if count > 1]
    assert len(resent) <= WORKERS
    records = journal_records(journal)
    assert [r for r in records if r["type"] == "header"] == records[:1]
    done_keys = Counter(r["key"] for r in records if r["type"] == "done")
    assert len(done_keys) == JOBS and max(done_keys.values()) == 1


def test_a_project_moved_elsewhere_resumes_without_paying_again(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI cache restored to another path, a renamed checkout: the batch file and its
    outputs moved together, so the journal still knows every job."""
    first = tmp_path / "first"
    first.mkdir()
    rows = [{"command": "txt2img", "prompt": f"move {n}", "seed": n} for n in range(3)]
    write_jsonl(first / "jobs.jsonl", rows[:2])
    assert volccli(capsys, ["batch", str(first / "jobs.jsonl"), "-o", str(first / "out")]).code == 0
    billed = box.stats()["billed"]
    moved = tmp_path / "moved"
    first.rename(moved)
    write_jsonl(moved / "jobs.jsonl", rows)  # and one row added since
    run = volccli(capsys, ["batch", str(moved / "jobs.jsonl"), "-o", str(moved / "out"), "--json"])
    assert run.code == 0, run.err
    assert [r["status"] for r in run.records[:-1]] == ["skipped", "skipped", "ok"]
    assert box.stats()["billed"] == billed + 1
    assert len(images_in(moved / "out")) == 3
    # Another batch file in the folder is still refused.
    write_jsonl(moved / "other.jsonl", rows[:1])
    other = volccli(capsys, ["batch", str(moved / "other.jsonl"), "-o", str(moved / "out")])
    assert other.code == 2 and "belongs to another batch file" in other.err


def test_an_image_written_but_not_journalled_is_adopted_not_requested_again(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [{"command": "txt2img", "prompt": f"adopt {n}"} for n in range(3)],
    )
    out = tmp_path / "out"
    assert volccli(capsys, ["batch", str(jobs), "-o", str(out)]).code == 0
    written = sorted(images_in(out))
    # As if the run was killed after writing the images but before journalling them,
    # and before one of the sidecars.
    journal = out / ".volccli-journal.jsonl"
    kept = [line for line in journal.read_text().splitlines() if '"type": "done"' not in line]
    journal.write_text("\n".join(kept) + "\n")
    Path(f"{written[0]}.json").unlink()
    billed = box.stats()["billed"]

    run = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--json"])
    assert run.code == 0, run.err
    assert {r["status"] for r in run.records[:-1]} == {"skipped"}
    assert box.stats()["billed"] == billed
    assert sorted(images_in(out)) == written
    restored = json.loads(Path(f"{written[0]}.json").read_text())
    assert restored["body"]["prompt"].startswith("adopt")
    assert restored["file"]["name"] == written[0].name


def test_an_interrupted_job_is_resent_with_the_seed_it_drew(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "seeded"}])
    out = tmp_path / "out"
    assert volccli(capsys, ["batch", str(jobs), "-o", str(out)]).code == 0
    (image,) = images_in(out)
    seed = json.loads(Path(f"{image}.json").read_text())["seed"]
    # Killed while the request was out: a start record, no image.
    journal = out / ".volccli-journal.jsonl"
    kept = [line for line in journal.read_text().splitlines() if '"type": "done"' not in line]
    journal.write_text("\n".join(kept) + "\n")
    image.unlink()
    Path(f"{image}.json").unlink()

    run = volccli(capsys, ["batch", str(jobs), "-o", str(out), "--json"])
    assert run.code == 0, run.err
    assert run.records[0]["seed"] == seed
    assert images_in(out) == [image]  # the same name, so no duplicate under another seed


def test_a_skipped_row_reports_the_seed_the_server_drew_for_it(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A call row's body has no seed: the server draws one, and the recipe records it.
    png(tmp_path / "in.png")
    row = {"command": "call", "req_key": "jimeng_i2i_v30", "image": "in.png"}
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl", [{**row, "prompt": "drawn"}, {**row, "prompt": "named"}]
    )
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "--name", "{prompt}", "--json"]
    first = volccli(capsys, args)
    assert first.code == 0, first.err
    seeds = {r["row"]: r["seed"] for r in first.records[:-1]}
    assert all(isinstance(seed, int) for seed in seeds.values())
    for record in first.records[:-1]:
        assert (
            json.loads(Path(f"{record['paths'][0]}.json").read_text())["seed"]
            == seeds[record["row"]]
        )

    again = volccli(capsys, args)
    assert again.code == 0, again.err
    assert {r["row"]: (r["status"], r["seed"]) for r in again.records[:-1]} == {
        line: ("skipped", seed) for line, seed in seeds.items()
    }

    # Killed before the journal said done: the images are found by their recipes (the
    # journal has no seed for them), not paid for again, and still report their seeds.
    journal = out / ".volccli-journal.jsonl"
    kept = [line for line in journal.read_text().splitlines() if '"type": "done"' not in line]
    journal.write_text("\n".join(kept) + "\n")
    billed = box.stats()["billed"]
    adopted = volccli(capsys, args)
    assert adopted.code == 0, adopted.err
    assert {r["row"]: (r["status"], r["seed"]) for r in adopted.records[:-1]} == {
        line: ("skipped", seed) for line, seed in seeds.items()
    }
    assert box.stats()["billed"] == billed == 2
