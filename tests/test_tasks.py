"""Async tasks: `task get`, `task wait`, --async in batch, and resuming a submitted task."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers_pipelines import (
    box,
    images_in,
    journal_records,
    pixels,
    size_of,
    volccli,
    write_jsonl,
)
from volccli.sandbox import API_KEY, Sandbox

__all__ = ["box"]
TXT2IMG = "high_aes_general_v14"


def submit(sandbox: Sandbox, body: dict[str, Any]) -> str:
    response = requests.post(
        f"{sandbox.base_url}/volcv/v1?Action=CVSync2AsyncSubmitTask&Version=2022-08-31",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["task_id"])


def polls(sandbox: Sandbox) -> int:
    return sandbox.stats()["requests"].get("CVSync2AsyncGetResult", {}).get("ok", 0)


def test_task_get_polls_once_and_shows_the_status(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(async_polls=2)
    task_id = submit(box, {"req_key": TXT2IMG, "prompt": "queued", "seed": 1})
    first = volccli(capsys, ["task", "get", TXT2IMG, task_id])
    assert (first.code, first.out.strip()) == (0, f"task {task_id}: in_queue")
    second = volccli(capsys, ["task", "get", TXT2IMG, task_id, "--json"])
    assert second.code == 0
    assert second.records[0]["status"] == "generating"
    done = volccli(capsys, ["task", "get", TXT2IMG, task_id, "--json"])
    (record,) = done.records
    assert record["status"] == "done" and record["images"] == 1
    assert record["data"]["binary_data_base64"] == "<1 images>"  # no image data printed
    assert len(done.out) < 2000
    assert polls(box) == 3


def test_task_wait_polls_through_the_states_then_writes_the_image(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(async_polls=3)
    task_id = submit(
        box, {"req_key": TXT2IMG, "prompt": "waited", "seed": 9, "width": 640, "height": 384}
    )
    run = volccli(
        capsys,
        [
            "task",
            "wait",
            TXT2IMG,
            task_id,
            "-o",
            str(tmp_path),
            "--poll-interval",
            "0.01",
            "--json",
        ],
    )
    assert run.code == 0, run.err
    # Each change of status is shown once (the second "generating" poll adds nothing).
    assert [line.split(": ")[-1] for line in run.err.splitlines() if "task " in line] == [
        "in_queue",
        "generating",
        "done",
    ]
    (record,) = run.records
    path = Path(record["path"])
    assert record["task_id"] == task_id and record["seed"] == 9
    assert size_of(path) == (640, 384)
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["task_id"] == task_id
    assert polls(box) == 4
    # Submitted elsewhere: its recipe has no request that `rerun` could send again.
    billed = box.stats()["billed"]
    refused = volccli(capsys, ["rerun", str(path)])
    assert refused.code == 2 and "holds no request to send again" in refused.err
    assert box.stats()["billed"] == billed and "Traceback" not in refused.err

    again = volccli(
        capsys,
        [
            "task",
            "wait",
            TXT2IMG,
            task_id,
            "-o",
            str(tmp_path),
            "-0",
            "--poll-interval",
            "0.01",
            "-q",
        ],
    )
    assert again.code == 0
    second = Path(again.out.rstrip("\0"))
    assert again.out.endswith("\0") and second != path  # never clobbered
    assert pixels(second) == pixels(path)


def test_task_wait_takes_back_the_parameters_of_a_task_submitted_here(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(async_polls=3)
    out = tmp_path / "out"
    polling = ["--poll-interval", "0.01", "-o", str(out)]
    gave_up = volccli(
        capsys,
        ["txt2img", "waited fox", "--seed", "11", "--async", "--wait-timeout", "0.001", *polling],
    )
    assert gave_up.code == 7, gave_up.err
    found = re.search(rf"task wait {TXT2IMG} (\d+)", gave_up.err)
    assert found is not None, gave_up.err
    assert images_in(out) == []

    run = volccli(capsys, ["task", "wait", TXT2IMG, found.group(1), *polling, "--json"])
    assert run.code == 0, run.err
    (record,) = run.records
    path = Path(record["path"])
    # Named, recorded and hashed as the submitting command would have done it.
    assert path.name == "txt2img_waited-fox_11.png"
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert (sidecar["body"]["prompt"], sidecar["seed"]) == ("waited fox", 11)
    rows = volccli(capsys, ["history", "--json", "-n", "2"]).records
    assert [row["outcome"] for row in rows] == ["ok", "failed"]
    assert rows[0]["request_hash"] == rows[1]["request_hash"] == sidecar["request_hash"]
    assert rows[0]["prompt"] == "waited fox"


def test_ctrl_c_while_waiting_says_how_to_fetch_the_submitted_task(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from volccli import runner as runner_module

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "wait", interrupted)
    run = volccli(capsys, ["txt2img", "owl", "--async", "-o", str(tmp_path)])
    assert run.code == 130
    submitted = box.stats()["requests"]["CVSync2AsyncSubmitTask"]["ok"]
    assert submitted == 1
    found = re.search(rf"fetch it with `volccli task wait {TXT2IMG} (\d+)`", run.err)
    assert found is not None, run.err
    assert run.err.rstrip().endswith("volccli: interrupted")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_ctrl_c_before_any_image_leaves_no_empty_output_folder(
    box: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    use_async: bool,
) -> None:
    from volccli import runner as runner_module

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    if use_async:
        monkeypatch.setattr(runner_module, "wait", interrupted)
    else:
        monkeypatch.setattr(runner_module.ApiClient, "call", interrupted)
    out = tmp_path / "made" / "sub"
    args = ["txt2img", "owl", "-o", str(out), *(["--async"] if use_async else [])]
    run = volccli(capsys, args)
    assert run.code == 130
    assert not (tmp_path / "made").exists()
    # An output folder that was there stays; the --name subfolders made for this run go.
    (tmp_path / "kept").mkdir()
    named = ["--name", "sub/dir/{seed}", "--on-exists", "fail"]
    run = volccli(capsys, [*args[:3], str(tmp_path / "kept"), *args[4:], *named])
    assert run.code == 130
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []


def test_under_the_built_in_sandbox_a_failed_task_is_not_sent_to_task_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = volccli(
        capsys,
        [
            *("--sandbox", "txt2img", "a fox volccli-fault:bad-base64", "--async"),
            *("--poll-interval", "0.01", "-o", str(tmp_path / "out")),
        ],
    )
    assert run.code == 7
    assert "volccli task wait" not in run.err
    assert "run the command again (the built-in sandbox's tasks end with it)" in run.err


def test_an_unknown_task_exits_4(
    box: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    get = volccli(capsys, ["task", "get", TXT2IMG, "1234567890123456789"])
    assert get.code == 4
    assert "was not found" in get.err
    wait = volccli(
        capsys, ["task", "wait", TXT2IMG, "1234567890123456789", "-o", str(tmp_path), "--json"]
    )
    assert wait.code == 4
    assert wait.records[-1]["error"]["code"] == "not_found"
    assert images_in(tmp_path) == []


def test_task_cancel_cancels_a_queued_task_and_refuses_a_started_one(
    box: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    box.configure(async_polls=2)
    queued = submit(box, {"req_key": TXT2IMG, "prompt": "never mind", "seed": 1})
    cancelled = volccli(capsys, ["task", "cancel", TXT2IMG, queued, "--json"])
    assert cancelled.code == 0
    assert cancelled.records == [
        {
            "req_key": TXT2IMG,
            "task_id": queued,
            "status": "cancelled",
            "request_id": cancelled.records[0]["request_id"],
        }
    ]
    assert box.stats()["recent"][-1]["action"] == "CVCancelTask"
    # A cancelled task is gone: waiting for it says so and writes nothing.
    gone = volccli(capsys, ["task", "wait", TXT2IMG, queued, "-o", str(tmp_path)])
    assert gone.code == 4 and "was not found" in gone.err
    assert images_in(tmp_path) == []
    started = submit(box, {"req_key": TXT2IMG, "prompt": "keep going", "seed": 2})
    assert volccli(capsys, ["task", "get", TXT2IMG, started]).out.strip().endswith("in_queue")
    assert volccli(capsys, ["task", "get", TXT2IMG, started]).out.strip().endswith("generating")
    refused = volccli(capsys, ["task", "cancel", TXT2IMG, started])
    assert refused.code == 4 and "only a queued task can be cancelled" in refused.err
    unknown = volccli(capsys, ["task", "cancel", TXT2IMG, "1234567890123456789"])
    assert unknown.code == 4 and "was not found" in unknown.err


def test_an_expired_task_exits_4_and_says_submit_again(
    box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(task_ttl=0)
    task_id = submit(box, {"req_key": TXT2IMG, "prompt": "too late"})
    for command in (["get"], ["wait", "--poll-interval", "0.01"]):
        run = volccli(capsys, ["task", command[0], TXT2IMG, task_id, *command[1:]])
        assert run.code == 4
        assert "expired" in run.err and "submit" in run.err


def test_async_batch_journals_each_task_and_polls_to_done(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(async_polls=2)
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": f"async {n}", "width": 384, "height": 256}
            for n in range(3)
        ],
    )
    out = tmp_path / "out"
    run = volccli(
        capsys,
        [
            "batch",
            str(jobs),
            "-o",
            str(out),
            "--async",
            "--poll-interval",
            "0.01",
            "--qps",
            "0",
            "--json",
        ],
    )
    assert run.code == 0, run.err
    results = run.records[:-1]
    assert all(r["status"] == "ok" and r["task_id"] for r in results)
    assert all(size_of(Path(r["paths"][0])) == (384, 256) for r in results)
    stats = box.stats()["requests"]
    assert stats["CVSync2AsyncSubmitTask"]["ok"] == 3
    assert stats["CVSync2AsyncGetResult"]["ok"] == 3 * 3  # in_queue, generating, done
    tasks = [
        r["task_id"] for r in journal_records(out / ".volccli-journal.jsonl") if r["type"] == "task"
    ]
    assert sorted(tasks) == sorted(r["task_id"] for r in results)


def test_a_journalled_task_is_fetched_on_rerun_not_submitted_again(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(async_polls=4)
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "slow task", "seed": 21}]
    )
    out = tmp_path / "out"
    # The first run gives up while the task is still generating.
    first = volccli(
        capsys,
        [
            "batch",
            str(jobs),
            "-o",
            str(out),
            "--async",
            "--poll-interval",
            "0.05",
            "--wait-timeout",
            "0.01",
            "--json",
        ],
    )
    assert first.code == 9
    (failed,) = first.records[:-1]
    assert failed["status"] == "failed" and failed["task_id"]
    assert images_in(out) == []

    # Rerun, even without --async: the submitted task is fetched.
    second = volccli(
        capsys, ["batch", str(jobs), "-o", str(out), "--poll-interval", "0.01", "--json"]
    )
    assert second.code == 0, second.err
    (done,) = second.records[:-1]
    assert done["status"] == "ok" and done["task_id"] == failed["task_id"]
    stats = box.stats()
    assert stats["requests"]["CVSync2AsyncSubmitTask"]["ok"] == 1
    assert "CVProcess" not in stats["requests"]
    assert stats["billed"] == 1
    assert len(images_in(out)) == 1


@pytest.mark.parametrize("lost", ["expired", "not_found"])
def test_a_journalled_task_that_is_lost_is_submitted_again_at_once(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], lost: str
) -> None:
    box.configure(async_polls=4)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "lost"}])
    out = tmp_path / "out"
    args = ["batch", str(jobs), "-o", str(out), "--async", "--poll-interval", "0.05"]
    assert volccli(capsys, [*args, "--wait-timeout", "0.01"]).code == 9
    if lost == "expired":
        box.configure(task_ttl=0)
    else:
        box.reset()  # the tasks are gone, as with a --sandbox that has stopped
    box.configure(async_polls=0)
    submitted = box.stats()["requests"].get("CVSync2AsyncSubmitTask", {}).get("ok", 0)
    again = volccli(capsys, [*args, "--json"])
    note = f"submitted again: the task an earlier run submitted was {lost}"
    assert again.records[0]["note"] == note
    if lost == "expired":
        # The resubmitted task expires too (the sandbox keeps none): failed, and forgotten,
        # so the next run submits it afresh.
        assert again.code == 9 and again.records[0]["code"] == "expired"
        box.configure(task_ttl=3600)
        again = volccli(capsys, [*args, "--json"])
    assert again.code == 0, again.err
    assert len(images_in(out)) == 1
    resubmitted = box.stats()["requests"]["CVSync2AsyncSubmitTask"]["ok"] - submitted
    assert resubmitted == (2 if lost == "expired" else 1)


def test_options_after_task_get_apply(capsys: pytest.CaptureFixture[str]) -> None:
    """--sandbox after the subcommand is honoured: the in-process sandbox answers."""
    run = volccli(capsys, ["task", "get", TXT2IMG, "7418048504813240370", "--sandbox"])
    assert run.code == 4, run.err
    assert "was not found" in run.err and "credentials" not in run.err


def test_under_sandbox_a_wait_timeout_does_not_point_at_task_wait(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The built-in sandbox stops with the command: `task wait` could never fetch the task.
    monkeypatch.setenv("VOLCCLI_SANDBOX_ASYNC_POLLS", "50")
    args = ["--sandbox", "txt2img", "far", "--async", "--poll-interval", "0.02"]
    run = volccli(capsys, [*args, "--wait-timeout", "0.1", "-o", str(tmp_path)])
    assert run.code == 7
    assert "raise --wait-timeout" in run.err and "task wait" not in run.err
    assert images_in(tmp_path) == []


def result_answers(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.stats()["requests"].get("CVSync2AsyncGetResult", {}))


def test_a_failed_poll_is_retried_and_points_at_task_wait_not_at_paying_again(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Polling a result is not billed: its server errors are retried without
    --retry-server-errors, and when they persist the task is fetched later, not resent."""
    task_id = submit(box, {"req_key": TXT2IMG, "prompt": "polled", "seed": 3})
    box.configure(error_rate=1.0)
    args = ["task", "wait", TXT2IMG, task_id, "-o", str(tmp_path), "--retries", "1"]
    failed = volccli(capsys, [*args, "--poll-interval", "0.01"])
    assert failed.code == 7
    assert result_answers(box) == {"50500": 2}  # the poll and its one retry
    (line,) = failed.err.strip().splitlines()[-1:]
    assert f"fetch it with `volccli task wait {TXT2IMG} {task_id}`" in line
    assert "--retry-server-errors" not in line and "billed" not in line
    box.configure(error_rate=0.0)
    done = volccli(capsys, [*args, "--poll-interval", "0.01"])
    assert done.code == 0, done.err
    assert len(images_in(tmp_path)) == 1
    assert box.stats()["billed"] == 1


def test_the_last_poll_comes_at_the_wait_timeout(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box.configure(async_polls=100)
    task_id = submit(box, {"req_key": TXT2IMG, "prompt": "slow", "seed": 4})
    run = volccli(
        capsys,
        [
            *("task", "wait", TXT2IMG, task_id, "-o", str(tmp_path)),
            *("--poll-interval", "0.4", "--wait-timeout", "0.6"),
        ],
    )
    assert run.code == 7
    # Polls at 0 s, 0.4 s and 0.6 s: the wait before the last is cut short, not skipped.
    assert result_answers(box) == {"ok": 3}
    assert "(--wait-timeout 0.6s)" in run.err


def test_a_damaged_result_of_a_done_task_is_fetched_again_not_paid_again(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    run = volccli(
        capsys,
        [
            *("txt2img", "a fox volccli-fault:bad-base64x1", "--async"),
            *("--poll-interval", "0.01", "-o", out),
        ],
    )
    assert run.code == 7
    found = re.search(rf"fetch the images again with `volccli task wait {TXT2IMG} (\d+)`", run.err)
    assert found, run.err
    assert not (tmp_path / "out").exists()
    # The task is done and kept: fetching it again is a poll, not a second submit.
    again = volccli(capsys, ["task", "get", TXT2IMG, found[1]])
    assert again.code == 0 and again.out.startswith(f"task {found[1]}: done")
    assert box.stats()["billed"] == 1


class _AnsweringClient:
    """Stands in for ApiClient.call: one answer, as the retry loop would return it."""

    def __init__(self, envelope: Any) -> None:
        self.envelope = envelope

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.envelope


@pytest.mark.parametrize("resent", [True, False])
def test_a_cancel_resent_after_a_lost_answer_that_finds_nothing_was_cancelled(
    resent: bool,
) -> None:
    from volccli.client import Envelope
    from volccli.errors import ApiRefusedError
    from volccli.tasks import cancel

    answer = {"code": 10000, "data": {"status": "not_found"}, "request_id": "r"}
    envelope = Envelope(answer, 200, 0.1, 2, resent=resent)
    if resent:  # the first attempt cancelled it; the service then forgets the task
        assert cancel(_AnsweringClient(envelope), TXT2IMG, "42").data["status"] == "cancelled"
    else:  # nothing may have happened before: not found means a wrong id
        with pytest.raises(ApiRefusedError, match="task 42 was not found"):
            cancel(_AnsweringClient(envelope), TXT2IMG, "42")
