"""Fault injection end to end: each fault gets the right retry decision and exit code,
leaves no partial file, is billed as often as the retry decision implies (never twice
unless asked), and leaves a batch journal that a rerun can finish from."""

from __future__ import annotations

import itertools
import json
import os
import resource
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import listing, run_cli
from tests.helpers_pipelines import PYTHON, kill_batch_after, subprocess_env, write_jsonl
from tests.helpers_proof import (
    check_journal,
    images,
    journal_records,
    outcomes,
    recent_for,
    stray_files,
    wait_idle,
)
from volccli.errors import ExitCode
from volccli.journal import JOURNAL_NAME
from volccli.sandbox import API_KEY, Sandbox

RETRY_SERVER = ["--retry-server-errors", "--retries", "1"]


@dataclass(frozen=True)
class Fault:
    marker: str
    args: list[str]
    exit_code: ExitCode
    seen: dict[str, int]  # what the sandbox answered this one body, outcome -> count
    billed: int  # how often that body was charged
    stderr: list[str] = field(default_factory=list)  # words of the final error line


FAULTS: dict[str, Fault] = {
    "read timeout": Fault(
        "sleep=0.6",
        ["--timeout", "0.2"],
        ExitCode.NETWORK,
        {"ok": 1},
        1,
        ["no answer within --timeout 0.2s", "may have been billed", "--retry-server-errors"],
    ),
    "read timeout, resent when asked": Fault(
        "sleep=0.6x1", ["--timeout", "0.2", *RETRY_SERVER], ExitCode.OK, {"ok": 2}, 2
    ),
    "50429 once": Fault("50429x1", [], ExitCode.OK, {"50429": 1, "ok": 1}, 1),
    "50430 twice": Fault("50430x2", ["--retries", "2"], ExitCode.OK, {"50430": 2, "ok": 1}, 1),
    "50429 beyond --retries": Fault(
        "50429", ["--retries", "1"], ExitCode.RATE_LIMITED, {"50429": 2}, 0, ["50429"]
    ),
    "50430 with no retries": Fault(
        "50430", ["--retries", "0"], ExitCode.RATE_LIMITED, {"50430": 1}, 0, ["50430"]
    ),
    "50500": Fault(
        "50500", [], ExitCode.NETWORK, {"50500": 1}, 0, ["50500", "--retry-server-errors"]
    ),
    "50500, resent when asked": Fault(
        "50500x1", RETRY_SERVER, ExitCode.OK, {"50500": 1, "ok": 1}, 1
    ),
    "50500 resent until --retries is spent": Fault(
        "50500",
        RETRY_SERVER,
        ExitCode.NETWORK,
        {"50500": 2},
        0,
        ["50500", "gave up after 2 attempts (--retries 1)"],
    ),
    "502 from the relay": Fault("502", [], ExitCode.NETWORK, {"http_502": 1}, 0, ["HTTP 502"]),
    "502, resent when asked": Fault(
        "502x1", RETRY_SERVER, ExitCode.OK, {"http_502": 1, "ok": 1}, 1
    ),
    "503 from the relay": Fault("503", [], ExitCode.NETWORK, {"http_503": 1}, 0, ["HTTP 503"]),
    "503, resent when asked": Fault(
        "503x1", RETRY_SERVER, ExitCode.OK, {"http_503": 1, "ok": 1}, 1
    ),
    "dropped connection": Fault(
        "drop", [], ExitCode.NETWORK, {"dropped": 1}, 1, ["may have been billed"]
    ),
    "truncated body": Fault(
        "truncate", [], ExitCode.NETWORK, {"truncated": 1}, 1, ["may have been billed"]
    ),
    "malformed JSON": Fault(
        "malformed-json", [], ExitCode.NETWORK, {"malformed_json": 1}, 1, ["not a JSON object"]
    ),
    "invalid base64": Fault(
        "bad-base64", [], ExitCode.NETWORK, {"bad_base64": 1}, 1, ["not valid base64"]
    ),
    # A damaged answer is never sent again by itself: the hint promises nothing else.
    "invalid base64, with --retry-server-errors": Fault(
        "bad-base64",
        RETRY_SERVER,
        ExitCode.NETWORK,
        {"bad_base64": 1},
        1,
        ["run the command again"],
    ),
    "expired result URL": Fault(
        "expired-url",
        ["--return-url"],
        ExitCode.NETWORK,
        {"expired_url": 1},
        1,
        ["expired", "without --return-url"],
    ),
    "slow trickle past --timeout": Fault(
        "trickle", ["--timeout", "0.5"], ExitCode.NETWORK, {"trickled": 1}, 1, ["too slowly"]
    ),
}


def _gap(first: dict[str, object], second: dict[str, object]) -> float:
    """Seconds between two requests in the sandbox's ``recent`` list."""
    start = datetime.fromisoformat(str(first["time"]))
    end = datetime.fromisoformat(str(second["time"]))
    return (end - start).total_seconds()


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_gets_its_retry_decision_and_exit_code(
    fresh_sandbox: Sandbox, tmp_path: Path, name: str
) -> None:
    fault = FAULTS[name]
    out = tmp_path / "out"
    prompt = f"fault {name} volccli-fault:{fault.marker}"
    started = time.monotonic()
    result = run_cli(
        ["txt2img", prompt, "-o", out, "--base-url", fresh_sandbox.base_url, *fault.args],
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    elapsed = time.monotonic() - started
    stats = wait_idle(fresh_sandbox)

    assert result.exit_code == fault.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert outcomes(stats) == fault.seen
    seen = recent_for(stats, prompt)
    assert len(seen) == sum(fault.seen.values())
    # Every attempt sent the same body, and it was charged as the decision implies.
    assert len({json.dumps(entry["body"], sort_keys=True) for entry in seen}) == 1
    assert stats["billed"] == fault.billed
    assert sorted(stats["billed_by_body"].values()) == ([fault.billed] if fault.billed else [])
    assert stray_files(out) == []
    if fault.exit_code == ExitCode.OK:
        (image,) = images(out)
        assert listing(out) == [image.name, f"{image.name}.json"]
        assert result.stdout.strip() == str(image)
    else:
        assert listing(out) == []
        assert result.stdout == ""
        last = result.stderr_lines[-1]
        assert last.startswith("volccli: error: ")
        for word in fault.stderr:
            assert word in last, (word, last)
        if "--retry-server-errors" in fault.args:
            assert "--retry-server-errors" not in last
    if "50429" in fault.seen or "50430" in fault.seen:
        # Retry-After: 1 from the sandbox is honoured: no resend before a second is up.
        assert all(_gap(a, b) >= 0.95 for a, b in itertools.pairwise(seen))
    if name == "slow trickle past --timeout":
        assert elapsed < 5  # the whole answer would take about a minute


def test_an_expired_url_leaves_no_partial_download(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    result = run_cli(
        [
            "txt2img",
            "link volccli-fault:expired-url",
            "-o",
            out,
            "--name",
            "sub/{seed}",
            "--return-url",
            "--base-url",
            fresh_sandbox.base_url,
        ],
        env={"VOLCCLI_API_KEY": API_KEY},
    )
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    stats = fresh_sandbox.stats()
    assert stats["downloads"] == 1 and stats["images_served"] == 0
    assert listing(out) == ["sub/"] and stray_files(out) == []


# --- the same faults in a batch: the journal, and a rerun that finishes the job -------------

# Rows that fail on the first run with the default retry policy and succeed when sent
# again (each marker fires only the first time(s) the same body is seen).
BATCH_FAULTS: dict[str, tuple[dict[str, object], ExitCode, bool]] = {
    # marker -> extra row fields, the job's exit code, billed on the first run
    "sleep=1.2x1": ({}, ExitCode.NETWORK, True),
    "tricklex1": ({}, ExitCode.NETWORK, True),
    "50429x2": ({}, ExitCode.RATE_LIMITED, False),
    "50500x1": ({}, ExitCode.NETWORK, False),
    "502x1": ({}, ExitCode.NETWORK, False),
    "503x1": ({}, ExitCode.NETWORK, False),
    "dropx1": ({}, ExitCode.NETWORK, True),
    "truncatex1": ({}, ExitCode.NETWORK, True),
    "malformed-jsonx1": ({}, ExitCode.NETWORK, True),
    "bad-base64x1": ({}, ExitCode.NETWORK, True),
    "expired-urlx1": ({"return_url": True}, ExitCode.NETWORK, True),
}
GOOD_ROWS = 4


def test_faults_in_a_batch_keep_the_journal_true_and_a_rerun_finishes_only_them(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    fresh_sandbox.configure(recent_limit=500)
    rows: list[dict[str, object]] = [
        {"command": "txt2img", "prompt": f"good {n}", "name": f"good{n}"} for n in range(GOOD_ROWS)
    ]
    for key, (extra, _, _) in BATCH_FAULTS.items():
        rows.append(
            {
                "command": "txt2img",
                "prompt": f"bad volccli-fault:{key}",
                "name": f"bad-{key}",
                **extra,
            }
        )
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    out = tmp_path / "out"
    args = ["batch", jobs, "-o", out, "--name", "{name}", "-j", "4", "--qps", "0"]
    args += ["--timeout", "0.5", "--retries", "1"]
    env = {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": fresh_sandbox.base_url}

    first = run_cli([*args, "--json"], env=env)
    assert first.exit_code == ExitCode.BATCH_FAILED, first.stderr
    assert "Traceback" not in first.stderr
    *records, summary = first.json_lines()
    by_prompt = {rows[r["row"] - 1]["prompt"]: r for r in records}
    assert summary["summary"]["ok"] == GOOD_ROWS
    assert summary["summary"]["failed"] == len(BATCH_FAULTS)
    for key, (_, code, _) in BATCH_FAULTS.items():
        record = by_prompt[f"bad volccli-fault:{key}"]
        assert record["status"] == "failed" and record["exit_code"] == code, record
    stats = wait_idle(fresh_sandbox)
    billed_first = sum(1 for _, _, billed in BATCH_FAULTS.values() if billed) + GOOD_ROWS
    assert stats["billed"] == billed_first
    assert stray_files(out) == []
    assert sorted(p.name for p in images(out)) == [f"good{n}.png" for n in range(GOOD_ROWS)]

    journal = out / JOURNAL_NAME
    steps = check_journal(journal)
    assert sorted(Counter(tuple(s) for s in steps.values()).items()) == [
        (("start", "done"), GOOD_ROWS),
        (("start", "failed"), len(BATCH_FAULTS)),
    ]
    requests_first = len(stats["recent"])

    second = run_cli([*args, "--json"], env=env)
    assert second.exit_code == ExitCode.OK, second.stderr
    *records, summary = second.json_lines()
    assert Counter(r["status"] for r in records) == {
        "skipped": GOOD_ROWS,
        "ok": len(BATCH_FAULTS),
    }
    stats = wait_idle(fresh_sandbox)
    # Exactly the failed jobs were sent again, once each, and paid for once each.
    assert len(stats["recent"]) - requests_first == len(BATCH_FAULTS)
    assert stats["billed"] == billed_first + len(BATCH_FAULTS)
    for n in range(GOOD_ROWS):
        (entry,) = recent_for(stats, f'"good {n}"')
        assert entry["billed"]
    steps = check_journal(journal)
    assert sorted(Counter(tuple(s) for s in steps.values()).items()) == [
        (("start", "done"), GOOD_ROWS),
        (("start", "failed", "start", "done"), len(BATCH_FAULTS)),
    ]
    written = images(out)
    assert len(written) == GOOD_ROWS + len(BATCH_FAULTS)
    assert all(Path(f"{path}.json").is_file() for path in written)
    assert not [p for p in written if p.stem.endswith("-1")]
    assert stray_files(out) == []


# --- kill -9 in the middle of 200 jobs ------------------------------------------------------

KILL_JOBS = 200
KILL_WORKERS = 8


def test_kill_9_in_a_200_job_batch_then_rerun_writes_each_output_once(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = [{"command": "txt2img", "prompt": f"load {n}", "name": f"n{n:03d}"} for n in range(200)]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    args = ["batch", str(jobs), "-o", str(out), "--name", "{name}", "-j", str(KILL_WORKERS)]
    args += ["--qps", "0"]
    env = subprocess_env()
    env.update(VOLCCLI_API_KEY=API_KEY, VOLCCLI_BASE_URL=fresh_sandbox.base_url)
    fresh_sandbox.configure(latency=0.05)
    kill_batch_after(args, env, journal, done=60, timeout=20)
    finished = {r["key"] for r in journal_records(journal) if r["type"] == "done"}
    assert 60 <= len(finished) < KILL_JOBS
    check_journal(journal, allow_open=KILL_WORKERS)
    fresh_sandbox.configure(latency=0)
    wait_idle(fresh_sandbox)  # requests in flight at the kill are still billed
    billed_first = fresh_sandbox.stats()["billed"]

    rerun = run_cli(
        [*args, "--json"],
        env={"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": fresh_sandbox.base_url},
    )
    assert rerun.exit_code == 0, rerun.stderr
    *_, summary = rerun.json_lines()
    assert summary["summary"]["ok"] + summary["summary"]["skipped"] == KILL_JOBS
    assert summary["summary"]["skipped"] >= len(finished)

    written = images(out)
    assert [p.name for p in written] == [f"n{n:03d}.png" for n in range(KILL_JOBS)]
    assert all(Path(f"{p}.json").is_file() for p in written)
    assert stray_files(out) == []
    prompts = Counter(json.loads(Path(f"{p}.json").read_text())["body"]["prompt"] for p in written)
    assert prompts == Counter(f"load {n}" for n in range(KILL_JOBS))

    stats = wait_idle(fresh_sandbox)
    assert stats["billed"] <= KILL_JOBS + KILL_WORKERS
    # A job finished before the kill was not sent again.
    assert stats["billed"] - billed_first <= KILL_JOBS - len(finished)
    twice = [count for count in stats["billed_by_body"].values() if count > 1]
    assert len(twice) <= KILL_WORKERS and max(twice, default=1) == 2
    steps = check_journal(journal, allow_open=KILL_WORKERS)
    assert len(steps) == KILL_JOBS
    assert all(sequence[-1] == "done" for sequence in steps.values())
    assert all(sequence.count("done") == 1 for sequence in steps.values())


def test_a_resumed_batch_removes_temp_files_of_a_killed_writer_only(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"command": "txt2img", "prompt": "sweep"}])
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    gone = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = out / "sub" / f".volccli-{int(gone.stdout)}-abc123.part"
    dead.write_bytes(b"half an image")
    live = out / f".volccli-{os.getpid()}-def456.part"  # a writer that is still running
    live.write_bytes(b"being written")
    result = run_cli(
        ["batch", jobs, "-o", out, "-v"],
        env={"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": fresh_sandbox.base_url},
    )
    assert result.exit_code == 0, result.stderr
    assert "removed 1 temp file(s) left by an interrupted run" in result.stderr
    assert not dead.exists() and live.read_bytes() == b"being written"
    assert len(images(out)) == 1


def test_a_single_command_removes_dead_writers_temp_files_in_its_folder_only(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    gone = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = out / f".volccli-{int(gone.stdout)}-abc123.part"
    dead.write_bytes(b"half a download")
    below = out / "sub" / dead.name  # not looked for below the output folder
    below.write_bytes(b"half an image")
    live = out / f".volccli-{os.getpid()}-def456.part"  # a writer that is still running
    live.write_bytes(b"being written")
    result = run_cli(
        ["txt2img", "sweep", "-o", out, "-v"],
        env={"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": fresh_sandbox.base_url},
    )
    assert result.exit_code == 0, result.stderr
    assert "removed 1 temp file(s) left by an interrupted run" in result.stderr
    assert not dead.exists() and below.exists() and live.read_bytes() == b"being written"


def _child(
    sandbox: Sandbox, args: list[str], *, latency: float, stdout: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """`volccli ARGS` in its own process against ``sandbox``, its stderr piped."""
    env = subprocess_env()
    env.update(VOLCCLI_API_KEY=API_KEY, VOLCCLI_BASE_URL=sandbox.base_url)
    sandbox.configure(latency=latency)
    return subprocess.Popen(
        [PYTHON, "-m", "volccli", *args], env=env, stdout=stdout, stderr=subprocess.PIPE
    )


def _first_line_then_close(child: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Read one line of stdout and close it, as `head -1` does; then the whole stderr."""
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.readline().decode()
    child.stdout.close()
    with child.stderr:
        return first, child.stderr.read().decode()


def _terminate_once_journalled(
    child: subprocess.Popen[bytes], journal: Path, record: str, count: int
) -> tuple[str, float]:
    """SIGTERM the child once its journal holds ``count`` records of type ``record``.

    Returns its stderr and the seconds from the signal to its exit.
    """
    assert child.stderr is not None
    marker = f'"type": "{record}"'
    deadline = time.monotonic() + 20
    while (journal.read_text() if journal.exists() else "").count(marker) < count:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.02)
    signalled = time.monotonic()
    child.terminate()
    with child.stderr:
        err = child.stderr.read().decode()
    child.wait(30)
    return err, time.monotonic() - signalled


def _rerun(sandbox: Sandbox, args: list[str]) -> Any:
    sandbox.configure(latency=0)
    gateway = {"VOLCCLI_API_KEY": API_KEY, "VOLCCLI_BASE_URL": sandbox.base_url}
    rerun = run_cli([*args, "--json"], env=gateway)
    assert rerun.exit_code == 0, rerun.stderr
    return rerun


def test_a_batch_whose_stdout_reader_goes_away_stops_cleanly_and_resumes(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    """`volccli batch … | head -1`: no traceback, exit 8, no new jobs, and a rerun finishes."""
    rows = [{"command": "txt2img", "prompt": f"piped {n}", "name": f"p{n:02d}"} for n in range(30)]
    out = tmp_path / "out"
    args = ["batch", str(write_jsonl(tmp_path / "jobs.jsonl", rows)), "-o", str(out), "-j", "1"]
    args += ["--qps", "0"]
    child = _child(fresh_sandbox, args, latency=0.05)
    first, err = _first_line_then_close(child)
    assert child.wait(30) == ExitCode.OUTPUT, err
    assert first.strip().endswith("p00.png")
    assert "Traceback" not in err
    assert "stdout was closed by its reader" in err and "not started" in err
    done_before = len(images(out))
    assert 1 <= done_before < 30  # the jobs in flight finished; no new ones started

    *_, summary = _rerun(fresh_sandbox, args).json_lines()
    assert summary["summary"]["skipped"] == done_before
    assert [p.name for p in images(out)] == [f"p{n:02d}.png" for n in range(30)]
    assert stray_files(out) == []


def test_a_command_whose_stdout_reader_goes_away_exits_8_quietly(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    args = ["txt2img", "piped owl", "-n", "3", "-o", str(tmp_path / "out")]
    child = _child(fresh_sandbox, args, latency=0.05)
    first, err = _first_line_then_close(child)
    assert child.wait(30) == ExitCode.OUTPUT, err
    assert first.strip().endswith(".png") and err == ""
    # It stopped at the first path it could not print: the third image was never asked for.
    assert len(images(tmp_path / "out")) == 2
    assert fresh_sandbox.stats()["billed"] == 2


def test_sigterm_stops_a_batch_after_its_jobs_in_flight_and_a_rerun_finishes(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A cancelled CI job: SIGTERM lets the paid-for jobs finish, then exits 143."""
    rows = [{"command": "txt2img", "prompt": f"cancel {n}", "name": f"c{n:02d}"} for n in range(40)]
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    args = ["batch", str(write_jsonl(tmp_path / "jobs.jsonl", rows)), "-o", str(out), "-j", "3"]
    args += ["--qps", "0"]
    child = _child(fresh_sandbox, args, latency=0.3, stdout=subprocess.DEVNULL)
    err, _ = _terminate_once_journalled(child, journal, "done", 1)
    assert child.returncode == ExitCode.TERMINATED, err
    assert "stopping: waiting for the" in err and "in flight" in err
    assert err.rstrip().endswith("volccli: terminated") and "Traceback" not in err
    # Every job that was started was also finished: nothing paid for was thrown away.
    steps = check_journal(journal, allow_open=0)
    done_before = len(steps)
    assert 1 <= done_before < 40
    assert len(images(out)) == done_before and stray_files(out) == []
    fresh_sandbox.configure(latency=0)
    assert wait_idle(fresh_sandbox)["billed"] == done_before

    _rerun(fresh_sandbox, args)
    assert [p.name for p in images(out)] == [f"c{n:02d}.png" for n in range(40)]
    assert wait_idle(fresh_sandbox)["billed"] == 40


def test_a_second_sigterm_leaves_at_once_and_counts_the_jobs_abandoned_in_flight(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = [{"command": "txt2img", "prompt": f"slow {n}"} for n in range(6)]
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    args = ["batch", str(write_jsonl(tmp_path / "jobs.jsonl", rows)), "-o", str(out)]
    args += ["-j", "3", "--qps", "0", "--json"]
    child = _child(fresh_sandbox, args, latency=5)
    deadline = time.monotonic() + 20
    while (journal.read_text() if journal.exists() else "").count('"type": "start"') < 3:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.02)
    signalled = time.monotonic()
    child.terminate()
    time.sleep(0.5)  # two signals at once may arrive as one
    child.terminate()
    stdout, stderr = child.communicate(timeout=30)
    err = stderr.decode()
    assert child.returncode == ExitCode.TERMINATED, err
    assert time.monotonic() - signalled < 4  # did not wait for the 5-second requests
    assert "Ctrl-C or SIGTERM again to leave now" in err
    summary = json.loads(stdout.decode().splitlines()[-1])["summary"]
    assert (summary["ok"], summary["abandoned"], summary["not_started"]) == (0, 3, 3)
    assert "0 ok, 3 abandoned in flight (perhaps billed), 3 not started" in err
    fresh_sandbox.configure(latency=0)
    wait_idle(fresh_sandbox)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_exits_8_in_one_line(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    env = subprocess_env()
    env.update(VOLCCLI_API_KEY=API_KEY, VOLCCLI_BASE_URL=fresh_sandbox.base_url)
    for extra in ([], ["--json"]):
        with open("/dev/full", "w") as full:
            run = subprocess.run(
                [PYTHON, "-m", "volccli", "txt2img", "full", "-o", str(tmp_path), *extra],
                env=env,
                stdout=full,
                stderr=subprocess.PIPE,
                timeout=60,
            )
        err = run.stderr.decode()
        assert run.returncode == ExitCode.OUTPUT, err
        assert err == (
            "volccli: error: cannot write the output (No space left on device); "
            "check where stdout goes and its free space\n"
        )


def _small_file_limit() -> None:
    # Runs in the forked child, where importing could wait on a lock another thread held.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))


def test_a_download_that_the_disk_cannot_hold_is_an_output_error(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    env = subprocess_env()
    env.update(VOLCCLI_API_KEY=API_KEY, VOLCCLI_BASE_URL=fresh_sandbox.base_url)
    run = subprocess.run(
        [
            PYTHON,
            "-m",
            "volccli",
            "txt2img",
            "big",
            "--return-url",
            "-o",
            str(tmp_path),
            "--no-log",
        ],
        env=env,
        capture_output=True,
        preexec_fn=_small_file_limit,  # as a full disk would refuse the bytes
        timeout=60,
    )
    err = run.stderr.decode()
    assert run.returncode == ExitCode.OUTPUT, err
    assert "cannot write the downloaded result" in err and "Traceback" not in err
    assert images(tmp_path) == [] and stray_files(tmp_path) == []


@pytest.mark.parametrize("closed", [1, 2], ids=["stdout", "stderr"])
def test_a_closed_stream_is_treated_as_discarded(
    fresh_sandbox: Sandbox, tmp_path: Path, closed: int
) -> None:
    env = subprocess_env()
    env.update(VOLCCLI_API_KEY=API_KEY, VOLCCLI_BASE_URL=fresh_sandbox.base_url)
    run = subprocess.run(
        [PYTHON, "-m", "volccli", "txt2img", "closed", "-o", str(tmp_path), "-q"],
        env=env,
        capture_output=True,
        preexec_fn=lambda: os.close(closed),  # as `>&-` or `2>&-` leaves it
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert len(images(tmp_path)) == 1 and stray_files(tmp_path) == []


def test_main_gives_back_the_sigterm_handler_it_borrowed() -> None:
    from volccli.cli import main

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_interrupted_async_batch_leaves_its_tasks_to_the_next_run(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    """SIGTERM does not wait for async tasks: their ids are journalled and fetched later."""
    rows = [{"command": "txt2img", "prompt": f"slow task {n}", "name": f"s{n}"} for n in range(4)]
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    args = ["batch", str(write_jsonl(tmp_path / "jobs.jsonl", rows)), "-o", str(out), "-j", "4"]
    args += ["--qps", "0", "--async", "--poll-interval", "0.05"]
    fresh_sandbox.configure(async_polls=100_000)  # the tasks never finish in this run
    child = _child(fresh_sandbox, args, latency=0, stdout=subprocess.DEVNULL)
    err, seconds = _terminate_once_journalled(child, journal, "task", 4)
    assert child.returncode == ExitCode.TERMINATED, err
    assert seconds < 10  # not waiting for 100 000 polls
    assert "4 left running" in err and "Traceback" not in err
    submitted = fresh_sandbox.stats()["requests"]["CVSync2AsyncSubmitTask"]["ok"]
    assert submitted == 4
    assert images(out) == []

    fresh_sandbox.configure(async_polls=1)
    rerun = _rerun(fresh_sandbox, args)
    *records, summary = rerun.json_lines()
    assert summary["summary"]["ok"] == 4
    assert all(record["note"] == "fetched the task an earlier run submitted" for record in records)
    assert fresh_sandbox.stats()["requests"]["CVSync2AsyncSubmitTask"]["ok"] == submitted
    assert [p.name for p in images(out)] == [f"s{n}.png" for n in range(4)]


@pytest.mark.parametrize("args", [["--help"], ["txt2img", "--help"], ["--version"]])
def test_help_to_a_reader_that_went_away_exits_8(args: list[str]) -> None:
    process = subprocess.Popen(
        [PYTHON, "-m", "volccli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # before a byte is written: as `volccli --help | true`
    _, err = process.communicate(timeout=60)
    assert process.returncode == 8, err
    assert b"Traceback" not in err
