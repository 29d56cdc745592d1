"""A 100-job batch against a sandbox that enforces QPS and concurrency limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers_pipelines import box, images_in, size_of, volccli, write_jsonl
from volccli.sandbox import Sandbox

__all__ = ["box"]


def test_a_hundred_jobs_under_server_limits_are_each_billed_once(
    box: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = [(512, 512), (768, 512), (512, 768), (640, 384)]
    rows = []
    for n in range(100):
        width, height = sizes[n % len(sizes)]
        rows.append(
            {
                "command": "txt2img",
                "prompt": f"load {n}",
                "width": width,
                "height": height,
                "name": f"job{n:03d}",
            }
        )
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    # The client asks for more than the server allows on both counts.
    box.configure(qps=25, concurrency=2)
    run = volccli(
        capsys,
        [
            "batch",
            str(jobs),
            "-o",
            str(tmp_path / "out"),
            "--name",
            "{name}",
            "-j",
            "4",
            "--qps",
            "40",
            "--json",
        ],
    )
    assert run.code == 0, run.err
    *results, summary = run.records
    assert summary["summary"]["ok"] == 100 and summary["summary"]["failed"] == 0

    written = images_in(tmp_path / "out")
    assert len(written) == 100
    for n, (width, height) in enumerate(sizes[n % len(sizes)] for n in range(100)):
        assert size_of(tmp_path / "out" / f"job{n:03d}.png") == (width, height)

    stats = box.stats()
    assert stats["billed"] == 100
    assert set(stats["billed_by_body"].values()) == {1}
    refused = stats["requests"]["CVProcess"]
    # The limits were really hit, and every refusal was retried to success.
    assert refused.get("50430", 0) + refused.get("50429", 0) > 0
    assert refused["ok"] == 100
    assert sum(r.get("retries", 0) for r in results) == sum(
        count for outcome, count in refused.items() if outcome != "ok"
    )
