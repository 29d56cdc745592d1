"""Rate limits in a batch: the retry budget of refusals, and a batch far above the limits.

A batch's refusals are waited out while other requests get through (the limiter is
finding the account's pace); an account that refuses everything still ends the job
after --retries. End to end, a batch asking for ten times the account's QPS and four
times its concurrency finishes every job with few refusals.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_pipelines import box, volccli, write_jsonl
from tests.test_ratelimit import FakeClock
from volccli.auth import BearerAuth
from volccli.client import BATCH_RATE_LIMIT_RETRIES, ApiClient
from volccli.connection import Connection
from volccli.errors import NetworkError, RateLimitError
from volccli.payload import encode_body
from volccli.ratelimit import AdaptiveLimiter
from volccli.sandbox import API_KEY, Sandbox

__all__ = ["box"]


def body(prompt: str) -> Any:
    return encode_body({"req_key": "high_aes_general_v14", "prompt": prompt, "seed": 1})


def client_for(
    sandbox: Sandbox, limiter: AdaptiveLimiter | None, *, retries: int, server: bool = False
) -> ApiClient:
    connection = Connection(
        "gateway", sandbox.base_url, BearerAuth(API_KEY), 10.0, 5.0, retries, server
    )
    return ApiClient(connection, limiter=limiter, rng=random.Random(3))


class Pauses:
    """The client's sleep: records each pause; with ``other``, another worker meanwhile
    gets a request through the same limiter, as in a batch whose account takes some."""

    def __init__(self, other: ApiClient | None = None) -> None:
        self.delays: list[float] = []
        self.other = other

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.other is not None:
            self.other.call("CVProcess", "2022-08-31", body(f"other {len(self.delays)}"))


def batch_limiter(qps: float = 50) -> AdaptiveLimiter:
    clock = FakeClock()  # the limiter's own spacing costs no real time
    return AdaptiveLimiter(qps, max_in_flight=4, clock=clock, sleep=clock.sleep)


def calls(sandbox: Sandbox) -> dict[str, int]:
    return sandbox.stats()["requests"].get("CVProcess", {})


@pytest.mark.parametrize("code", [50429, 50430])
def test_refusals_are_waited_out_while_others_get_through(
    fresh_sandbox: Sandbox, code: int
) -> None:
    limiter = batch_limiter()
    client = client_for(fresh_sandbox, limiter, retries=0)
    client.sleep = pauses = Pauses(other=client_for(fresh_sandbox, limiter, retries=0))
    result = client.call("CVProcess", "2022-08-31", body(f"fox volccli-fault:{code}x3"))
    assert result.attempts == 4  # --retries 0, yet three refusals were waited out
    assert calls(fresh_sandbox) == {str(code): 3, "ok": 4}
    assert len(pauses.delays) == 3
    assert all(delay >= 1.0 for delay in pauses.delays)  # Retry-After: 1 still holds
    assert fresh_sandbox.stats()["billed"] == 4


def test_refusals_count_against_retries_when_nothing_gets_through(
    fresh_sandbox: Sandbox,
) -> None:
    limiter = batch_limiter()
    client = client_for(fresh_sandbox, limiter, retries=1)
    client.sleep = pauses = Pauses()
    with pytest.raises(RateLimitError):
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50429x5"))
    # The first refusal is waited out (the limiter slowed down for it), then --retries.
    assert calls(fresh_sandbox) == {"50429": 3}
    assert len(pauses.delays) == 2


def test_refusals_count_when_the_limiter_is_not_slowing_down(fresh_sandbox: Sandbox) -> None:
    # --qps 0: the limiter ignores 429s, so nothing is adapting and --retries holds.
    limiter = AdaptiveLimiter(0, max_in_flight=4)
    client = client_for(fresh_sandbox, limiter, retries=1)
    client.sleep = Pauses(other=client_for(fresh_sandbox, limiter, retries=0))
    with pytest.raises(RateLimitError):
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50429x5"))
    assert calls(fresh_sandbox) == {"50429": 2, "ok": 1}


def test_waiting_out_refusals_has_a_bound_of_its_own(fresh_sandbox: Sandbox) -> None:
    limiter = batch_limiter()
    client = client_for(fresh_sandbox, limiter, retries=2)
    client.sleep = Pauses(other=client_for(fresh_sandbox, limiter, retries=0))
    with pytest.raises(RateLimitError):
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50429"))
    attempts = BATCH_RATE_LIMIT_RETRIES + 2 + 1  # the bound, --retries, the first
    assert calls(fresh_sandbox) == {"50429": attempts, "ok": attempts - 1}


def test_other_errors_keep_the_retries_budget_in_a_batch(fresh_sandbox: Sandbox) -> None:
    limiter = batch_limiter()
    client = client_for(fresh_sandbox, limiter, retries=1, server=True)
    client.sleep = Pauses(other=client_for(fresh_sandbox, limiter, retries=0))
    limiter.rate = 10  # throttling, as after a refusal
    with pytest.raises(NetworkError) as info:
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50500x5"))
    assert "gave up after 2 attempts (--retries 1)" in (info.value.hint or "")
    assert calls(fresh_sandbox) == {"50500": 2, "ok": 1}


def test_a_single_command_keeps_the_retries_budget(fresh_sandbox: Sandbox) -> None:
    client = client_for(fresh_sandbox, None, retries=1)
    client.sleep = Pauses()
    fresh_sandbox.configure(qps=1000)
    with pytest.raises(RateLimitError):
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50429x5"))
    assert calls(fresh_sandbox) == {"50429": 2}


# --- end to end -------------------------------------------------------------------------

JOBS = 60
ACCOUNT_QPS = 20
ACCOUNT_CONCURRENCY = 2


def test_a_batch_far_above_the_accounts_limits_finishes_every_job_with_few_refusals(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"command": "txt2img", "prompt": f"pace {n}", "width": 256, "height": 256}
        for n in range(JOBS)
    ]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    box.configure(qps=ACCOUNT_QPS, concurrency=ACCOUNT_CONCURRENCY, latency=0.05)
    # Ten times the account's QPS, four times its concurrency, and one retry per job:
    # before the limiter found the pace, such a batch failed jobs.
    args = ["batch", str(jobs), "-o", str(tmp_path / "out"), "-j", "8", "--qps", "200"]
    run = volccli(capsys, [*args, "--retries", "1", "--json"])
    assert run.code == 0, run.err
    *results, summary = run.records
    assert summary["summary"]["ok"] == JOBS and summary["summary"]["failed"] == 0
    stats = box.stats()
    assert stats["billed"] == JOBS and set(stats["billed_by_body"].values()) == {1}
    answered = stats["requests"]["CVProcess"]
    refused = answered.get("50429", 0) + answered.get("50430", 0)
    assert answered["ok"] == JOBS
    assert refused == sum(r.get("retries", 0) for r in results)
    # The limits were met (the first burst finds them), and little more after that.
    assert 0 < refused < 0.15 * JOBS
