"""Batches: throughput of `volccli batch` under an account's limits, and its CPU per job.

    python bench/bench_batch.py [--rounds 3] [--cpu-jobs 500] [--only throughput|cpu]

**Throughput.** 300 txt2img jobs (256 x 256, so the sandbox's own work is small) against
a sandbox process started with `--latency 0.3 --qps 20 --concurrency 8`. The ideal wall
time is max(N / qps, N x latency / concurrency) = max(15 s, 11.25 s) = 15 s. The bar:
`volccli batch -j 8 --qps 20` (the limits a user who knows the account would give)
takes at most 1.15x the ideal, with no failed job, and the sandbox's stats show 300
billed successes and no body billed twice. Beside it: `xargs -P 8` over single
`volccli txt2img` calls (no shared rate limit: each process retries the 50429/50430 it
gets), and a serial loop (`xargs -P 1`, one call after the other) over the first 30
jobs, extrapolated to 300. The sandbox's counters are reset before every run, so the
50429/50430 columns count what the sandbox answered to that run alone.

**CPU per job.** The same batch with 1024 x 1024 results (base64 in the answer, decoded
and written to disk) against a sandbox with no latency and no limits, started with
`--lenient-ranges` so 1024 is accepted (volccli runs with `--no-validate`). CPU time is
the user + system time of the measured process and its children from `wait4`, divided
by the number of jobs, start-up included (nothing is subtracted). The bar: `volccli
batch` (journal, history, sidecars and embedded recipes on, as a user gets them) uses
at most the CPU per job of a script that calls the official SDK's
`VisualService.cv_process` in a loop in one process, writing the same images. A loop
over one `requests.Session` with a Bearer key is shown for reference (the floor).

Every variant is a fresh process from the same venv (benchlib.fresh_install); rounds run
every variant once in a shuffled order after one small warm-up round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    ACCESS_KEY,
    API_KEY,
    SECRET_KEY,
    Install,
    Run,
    SandboxProcess,
    client_env,
    fresh_install,
    machine_line,
    measure,
    median,
    paired_ratio,
    quartiles,
    ratio_spread,
    sandbox,
    table,
    verdict,
    workdir,
)

THROUGHPUT_JOBS = 300
LATENCY = 0.3
QPS = 20
CONCURRENCY = 8
IDEAL = max(THROUGHPUT_JOBS / QPS, THROUGHPUT_JOBS * LATENCY / CONCURRENCY)
THROUGHPUT_BAR = 1.15
SERIAL_JOBS = 30
WARMUP_JOBS = 16
CPU_BAR = 1.0
CPU_WORKERS = 4
REQ_KEY = "high_aes_general_v14"
BARE = f"volccli batch -j {CPU_WORKERS} (Bearer) --no-log --no-sidecar --no-embed"

SDK_LOOP = '''"""What a user writes with the official SDK: cv_process in a loop, decode, write."""
import base64
import json
import sys

from volcengine.visual.VisualService import VisualService

host, jobs, folder = sys.argv[1:4]
service = VisualService()
service.set_ak("{access_key}")
service.set_sk("{secret_key}")
service.set_host(host)
service.set_scheme("http")
with open(jobs, encoding="utf-8") as rows:
    for line in rows:
        row = json.loads(line)
        answer = service.cv_process(
            {{
                "req_key": "{req_key}",
                "prompt": row["prompt"],
                "seed": row["seed"],
                "width": row["width"],
                "height": row["height"],
            }}
        )
        if answer.get("code") != 10000:
            sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
        with open(f"{{folder}}/{{row['name']}}.png", "wb") as out:
            out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))
'''

REQUESTS_LOOP = '''"""The floor: one requests.Session, a Bearer key, decode, write."""
import base64
import json
import sys

import requests

url, jobs, folder = sys.argv[1:4]
session = requests.Session()
session.headers["Authorization"] = "Bearer {api_key}"
with open(jobs, encoding="utf-8") as rows:
    for line in rows:
        row = json.loads(line)
        body = {{
            "req_key": "{req_key}",
            "prompt": row["prompt"],
            "seed": row["seed"],
            "width": row["width"],
            "height": row["height"],
        }}
        answer = session.post(
            url + "/volcv/v1?Action=CVProcess&Version=2022-08-31", json=body, timeout=120
        ).json()
        if answer.get("code") != 10000:
            sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
        with open(f"{{folder}}/{{row['name']}}.png", "wb") as out:
            out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))
'''


# --- jobs and checks ------------------------------------------------------------------


def job_rows(count: int, size: int) -> list[dict[str, object]]:
    return [
        {
            "command": "txt2img",
            "prompt": f"a lighthouse at dusk, study {n}",
            "seed": n,
            "width": size,
            "height": size,
            "name": f"job{n:04d}",
        }
        for n in range(count)
    ]


def write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_xargs(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    """One line of `volccli txt2img` arguments per job (xargs honours the double quotes)."""
    lines = [f'"{row["prompt"]}" --seed {row["seed"]} --name {row["name"]}' for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the IHDR chunk, or None when this is not a PNG."""
    with path.open("rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def count_images(folder: Path, size: int) -> int:
    """How many PNGs of size x size the folder holds (anything else is an error)."""
    found = 0
    for path in folder.glob("*.png"):
        if png_size(path) != (size, size):
            raise SystemExit(f"{path} is not a {size} x {size} PNG")
        found += 1
    return found


def reset(server: SandboxProcess) -> None:
    request = urllib.request.Request(f"{server.url}/__sandbox/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


# --- rounds ---------------------------------------------------------------------------


@dataclass
class Sample:
    run: Run
    jobs: int  # jobs this run was given
    images: int  # images it left on disk
    stats: dict[str, object] = field(default_factory=dict)
    small: Run | None = None  # the same variant with only WARMUP_JOBS jobs, just before

    @property
    def failed(self) -> int:
        return self.jobs - self.images

    def answers(self, outcome: str) -> int:
        requests = self.stats.get("requests")
        if not isinstance(requests, dict):
            return 0
        return sum(int(counts.get(outcome, 0)) for counts in requests.values())

    @property
    def billed(self) -> int:
        return int(self.stats.get("billed", 0))  # type: ignore[call-overload]

    @property
    def most_billed(self) -> int:
        by_body = self.stats.get("billed_by_body")
        return max(by_body.values(), default=0) if isinstance(by_body, dict) else 0


Variant = Callable[[Path, bool], Sample]  # (folder, warm-up) -> sample


def rounds(variants: dict[str, Variant], count: int, folder: Path) -> dict[str, list[Sample]]:
    """One warm-up round, then ``count`` rounds of every variant in a shuffled order."""
    rng = random.Random(7)
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    numbers = {name: n for n, name in enumerate(variants)}
    for index in range(-1, count):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            out = folder / "out" / f"{numbers[name]}-{index}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            sample = variants[name](out, index < 0)
            shutil.rmtree(out, ignore_errors=True)  # thousands of files per round
            if index >= 0:
                samples[name].append(sample)
            print(
                f"  {'warm-up' if index < 0 else f'round {index + 1}'}: {name}: "
                f"{sample.run.seconds:.1f} s, {sample.images}/{sample.jobs} images",
                file=sys.stderr,
                flush=True,
            )
    return samples


def spread(values: Sequence[float], digits: int = 1) -> str:
    lo, hi = quartiles(values)
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


# --- throughput -----------------------------------------------------------------------


def throughput(install: Install, runs: int) -> bool:
    folder = workdir("batch-throughput")
    rows = job_rows(THROUGHPUT_JOBS, 256)
    batch_file = write_jsonl(folder / "jobs.jsonl", rows)
    warm_file = write_jsonl(folder / "warm.jsonl", rows[:WARMUP_JOBS])
    xargs_file = write_xargs(folder / "jobs.args", rows)
    xargs_warm = write_xargs(folder / "warm.args", rows[:WARMUP_JOBS])
    serial_file = write_xargs(folder / "serial.args", rows[:SERIAL_JOBS])
    limits = ("--latency", str(LATENCY), "--qps", str(QPS), "--concurrency", str(CONCURRENCY))
    with sandbox(install, *limits) as server:
        env = client_env(folder / "home", VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY)

        def sampled(argv: list[str], out: Path, jobs: int) -> Sample:
            reset(server)
            run = measure(argv, env=env, cwd=folder)
            return Sample(run, jobs, count_images(out, 256), server.stats())

        def batch(out: Path, warm: bool) -> Sample:
            argv = [
                str(install.volccli), "batch", str(warm_file if warm else batch_file),
                "-o", str(out), "--name", "{name}", "-j", str(CONCURRENCY), "--qps", str(QPS),
            ]  # fmt: skip
            return sampled(argv, out, WARMUP_JOBS if warm else THROUGHPUT_JOBS)

        def xargs(parallel: int, args_file: Path, jobs: int) -> Variant:
            def run(out: Path, warm: bool) -> Sample:
                argv = [
                    "xargs", "-P", str(parallel), "-L", "1", "-a",
                    str(xargs_warm if warm else args_file),
                    str(install.volccli), "txt2img", "--width", "256", "--height", "256",
                    "-o", str(out),
                ]  # fmt: skip
                return sampled(argv, out, WARMUP_JOBS if warm else jobs)

            return run

        samples = rounds(
            {
                f"volccli batch -j {CONCURRENCY} --qps {QPS}": batch,
                f"xargs -P {CONCURRENCY} volccli txt2img": xargs(
                    CONCURRENCY, xargs_file, THROUGHPUT_JOBS
                ),
                f"serial loop (xargs -P 1), {SERIAL_JOBS} jobs": xargs(1, serial_file, SERIAL_JOBS),
            },
            runs,
            folder,
        )
    print(
        f"## Batch throughput: {THROUGHPUT_JOBS} txt2img jobs, 256 x 256 ({runs} rounds; "
        f"{machine_line()})\n"
    )
    print(
        f"Sandbox: --latency {LATENCY} --qps {QPS} --concurrency {CONCURRENCY}. Ideal: "
        f"max({THROUGHPUT_JOBS} / {QPS}, {THROUGHPUT_JOBS} x {LATENCY} / {CONCURRENCY}) = "
        f"{IDEAL:g} s.\n"
    )
    rows_out = []
    verdicts: list[bool] = []
    for name, runs_of in samples.items():
        scale = THROUGHPUT_JOBS / runs_of[0].jobs
        seconds = [s.run.seconds * scale for s in runs_of]
        ratio = median(seconds) / IDEAL
        clean = all(
            s.failed == 0
            and s.run.returncode == 0
            and s.billed == s.jobs
            and s.most_billed == 1
            and s.answers("ok") == s.jobs
            for s in runs_of
        )
        bar = ""
        if name.startswith("volccli batch"):
            ok = ratio <= THROUGHPUT_BAR and clean
            verdicts.append(ok)
            bar = f"{verdict(ok)} (<= {THROUGHPUT_BAR}x, clean)"
        rows_out.append(
            [
                name,
                f"{median([s.run.seconds for s in runs_of]):.1f}",
                f"{median(seconds):.1f}" + ("" if scale == 1 else f" (x{scale:g})"),
                spread(seconds),
                f"{ratio:.2f}",
                f"{THROUGHPUT_JOBS / median(seconds):.1f}",
                f"{median([s.run.cpu_seconds for s in runs_of]) * scale:.1f}",
                "/".join(str(s.failed) for s in runs_of),
                "/".join(str(s.answers("50429")) for s in runs_of),
                "/".join(str(s.answers("50430")) for s in runs_of),
                "/".join(f"{s.billed}" for s in runs_of),
                max(s.most_billed for s in runs_of),
                bar,
            ]
        )
    print(
        table(
            [
                "variant",
                "wall s",
                f"for {THROUGHPUT_JOBS} jobs s",
                "p25–p75 s",
                "vs ideal",
                "jobs/s",
                "CPU s",
                "failed",
                "50429",
                "50430",
                "billed",
                "max billed per body",
                "bar",
            ],
            rows_out,
        )
    )
    print(
        f"\nPer-round columns (failed, 50429, 50430, billed) list every round. The serial "
        f"loop ran the first {SERIAL_JOBS} jobs; its time and CPU are scaled to "
        f"{THROUGHPUT_JOBS} jobs. CPU is the client side only (every process, from wait4).\n"
    )
    ok = all(verdicts)
    print(f"batch throughput bar (<= {THROUGHPUT_BAR}x the ideal, clean): {verdict(ok)}")
    return ok


# --- CPU per job ----------------------------------------------------------------------


def cpu_per_job(install: Install, runs: int, jobs: int) -> bool:
    folder = workdir("batch-cpu")
    rows = job_rows(jobs, 1024)
    batch_file = write_jsonl(folder / "jobs.jsonl", rows)
    warm_file = write_jsonl(folder / "warm.jsonl", rows[:WARMUP_JOBS])
    sdk = folder / "sdk_loop.py"
    sdk.write_text(SDK_LOOP.format(access_key=ACCESS_KEY, secret_key=SECRET_KEY, req_key=REQ_KEY))
    plain = folder / "requests_loop.py"
    plain.write_text(REQUESTS_LOOP.format(api_key=API_KEY, req_key=REQ_KEY))
    home = folder / "home"
    with sandbox(install, "--lenient-ranges") as server:
        gateway = client_env(home, VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY)
        signed = client_env(
            home,
            VOLCCLI_ENDPOINT=server.url,
            VOLCCLI_ACCESS_KEY=ACCESS_KEY,
            VOLCCLI_SECRET_KEY=SECRET_KEY,
        )
        scripts_env = client_env(home)

        def volccli(
            env: dict[str, str], before: Sequence[str] = (), after: Sequence[str] = ()
        ) -> Variant:
            """``before``: global options; ``after``: options of the batch command."""

            def run(out: Path, warm: bool) -> Sample:
                def argv(jobs_file: Path, into: Path) -> list[str]:
                    return [
                        str(install.volccli), *before, "batch", str(jobs_file),
                        "-o", str(into), "--name", "{name}", "-j", str(CPU_WORKERS),
                        "--qps", "0", "--no-validate", *after,
                    ]  # fmt: skip

                return _cpu_pair(argv, env, folder, out, warm, warm_file, batch_file, jobs)

            return run

        def script(path: Path, address: str) -> Variant:
            def run(out: Path, warm: bool) -> Sample:
                def argv(jobs_file: Path, into: Path) -> list[str]:
                    return [str(install.python), str(path), address, str(jobs_file), str(into)]

                return _cpu_pair(argv, scripts_env, folder, out, warm, warm_file, batch_file, jobs)

            return run

        samples = rounds(
            {
                "SDK cv_process loop (V4 signed)": script(sdk, server.host),
                "requests loop (Bearer)": script(plain, server.url),
                f"volccli batch -j {CPU_WORKERS} (Bearer)": volccli(gateway),
                f"volccli batch -j {CPU_WORKERS} (V4 signed)": volccli(
                    signed, before=("--auth", "official")
                ),
                BARE: volccli(gateway, after=("--no-log", "--no-sidecar", "--no-embed")),
            },
            runs,
            folder,
        )
    print(
        f"## Batch CPU per job: {jobs} txt2img jobs, 1024 x 1024 PNG results ({runs} rounds; "
        f"{machine_line()})\n"
    )
    sdk_runs = samples["SDK cv_process loop (V4 signed)"]
    sdk_cpu = [s.run.cpu_seconds for s in sdk_runs]
    sdk_marginal = [_after_startup(s) for s in sdk_runs]
    rows_out = []
    ratios: dict[str, float] = {}
    for name, runs_of in samples.items():
        cpu = [s.run.cpu_seconds for s in runs_of]
        per_job = [c / jobs * 1000 for c in cpu]
        marginal = [_after_startup(s) for s in runs_of]
        startup = [(s.small.cpu_seconds if s.small else 0.0) for s in runs_of]
        ratio = paired_ratio(cpu, sdk_cpu)
        ratios[name] = ratio
        bar = ""
        if name.startswith("volccli") and name != BARE:
            bar = f"{verdict(ratio <= CPU_BAR)} (<= {CPU_BAR:g}x)"
        rows_out.append(
            [
                name,
                f"{median(per_job):.2f}",
                f"{ratio:.2f} ({ratio_spread(cpu, sdk_cpu)})",
                f"{median(marginal) * 1000:.2f}",
                f"{paired_ratio(marginal, sdk_marginal):.2f} "
                f"({ratio_spread(marginal, sdk_marginal)})",
                f"{median(startup):.2f}",
                f"{median([s.run.seconds for s in runs_of]):.1f}",
                "/".join(str(s.failed) for s in runs_of),
                bar,
            ]
        )
    print(
        table(
            [
                "variant",
                f"CPU ms per job, {jobs}-job run",
                "vs SDK (p25–p75)",
                "CPU ms per job once started",
                "vs SDK (p25–p75)",
                f"{WARMUP_JOBS}-job run CPU s",
                "wall s",
                "failed",
                "bar",
            ],
            rows_out,
        )
    )
    print(
        f"\nCPU = user + system time of the process and its children (wait4). The bar "
        f"compares the whole {jobs}-job run's CPU / {jobs}, start-up included. Once started: "
        f"(CPU of the {jobs}-job run - CPU of a {WARMUP_JOBS}-job run of the same variant just "
        f"before it) / {jobs - WARMUP_JOBS}, the cost of one more job in a running batch. "
        f"Ratios are medians of the per-round ratios. The last "
        "row is for reference (no bar): the same batch without history, sidecars and "
        "embedded recipes (the journal cannot be turned off).\n"
    )
    ok = all(
        ratio <= CPU_BAR
        for name, ratio in ratios.items()
        if name.startswith("volccli") and name != BARE
    )
    print(f"batch CPU-per-job bar (<= the SDK loop): {verdict(ok)}")
    return ok


def _cpu_pair(
    argv: Callable[[Path, Path], list[str]],
    env: dict[str, str],
    cwd: Path,
    out: Path,
    warm: bool,
    warm_file: Path,
    batch_file: Path,
    jobs: int,
) -> Sample:
    """The full run, after a run of WARMUP_JOBS jobs that measures what start-up costs."""
    (out / "small").mkdir()
    (out / "full").mkdir()
    small = _cpu_sample(argv(warm_file, out / "small"), env, cwd, out / "small", WARMUP_JOBS)
    if warm:
        return small
    full = _cpu_sample(argv(batch_file, out / "full"), env, cwd, out / "full", jobs)
    full.small = small.run
    return full


def _after_startup(sample: Sample) -> float:
    """CPU seconds per job once started: (full run - small run) / (jobs between them)."""
    assert sample.small is not None
    return (sample.run.cpu_seconds - sample.small.cpu_seconds) / (sample.jobs - WARMUP_JOBS)


def _cpu_sample(argv: list[str], env: dict[str, str], cwd: Path, out: Path, jobs: int) -> Sample:
    run = measure(argv, env=env, cwd=cwd)
    if run.returncode != 0:
        raise SystemExit(f"{argv[1]} failed with exit code {run.returncode}:\n{run.stderr[-2000:]}")
    return Sample(run, jobs, count_images(out, 1024))


# --- where a job's CPU goes -------------------------------------------------------------

# (module, class or "", function, what it is): each is timed with the thread's CPU clock.
# Nested stages are inside the ones above them; write_temp counts the image's and the
# sidecar's temp files (each written, then linked or renamed into place).
STAGES = (
    ("volccli.batch", "Engine", "_one", "whole job (batch.Engine._one)"),
    ("volccli.journal", "Journal", "_append", "  journal: start and done records (done fsync'd)"),
    ("volccli.output", "", "target_for", "  output names resolved (before sending, after)"),
    ("volccli.runner", "Runner", "_send", "  request and answer (runner.Runner._send)"),
    ("volccli.client", "ApiClient", "_attempt", "    HTTP exchange via requests"),
    ("volccli.client", "", "parse_response", "    answer JSON parsed"),
    ("volccli.runner", "Runner", "_write", "  results (runner.Runner._write)"),
    ("volccli.runner", "", "decode_base64", "    base64 decoded and checked"),
    ("volccli.runner", "", "build_recipe", "    recipe built"),
    ("volccli.recipe", "", "embed_parts", "    recipe embedded in the PNG"),
    ("volccli.output", "", "write_temp", "    temp files written (image, sidecar)"),
    ("volccli.runner", "", "_verified", "    image verified (PNG chunk walk)"),
    ("volccli.output", "", "place", "    image linked into place, never clobbering"),
    ("volccli.runner", "", "_dumps", "    sidecar JSON (indented)"),
    ("volccli.history", "History", "record", "  history row (SQLite, WAL)"),
)


def stages(jobs: int) -> None:
    """Run one batch in this process (-j 1) and print the CPU per job of each stage."""
    import contextlib
    import importlib
    import io
    import threading
    import time
    from collections import Counter

    install = fresh_install()  # only for the sandbox process
    folder = workdir("batch-stages")
    batch_file = write_jsonl(folder / "jobs.jsonl", job_rows(jobs, 1024))
    warm_file = write_jsonl(folder / "warm.jsonl", job_rows(WARMUP_JOBS, 1024))
    spent: Counter[str] = Counter()
    lock = threading.Lock()

    def timed(function: Callable[..., object], label: str) -> Callable[..., object]:
        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    spent[label] += time.thread_time() - started

        return wrapper

    for module_name, owner_name, name, label in STAGES:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        setattr(owner, name, timed(getattr(owner, name), label))
    from volccli.cli import main as volccli_main

    with sandbox(install, "--lenient-ranges") as server:
        env = client_env(folder / "home", VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY)
        os.environ.clear()
        os.environ.update(env)

        def batch(path: Path, out: Path) -> float:
            args = [
                "-q", "batch", str(path), "-o", str(out), "--name", "{name}", "-j", "1",
                "--qps", "0", "--no-validate",
            ]  # fmt: skip
            spent.clear()
            started = time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    volccli_main(args)
                except SystemExit as done:
                    if done.code:
                        raise SystemExit(f"the batch failed with exit code {done.code}") from None
            return time.process_time() - started

        batch(warm_file, folder / "warm")  # imports, connections, page cache
        process = batch(batch_file, folder / "out")
        sdk = _sdk_in_process(server, warm_file, folder / "sdk-warm")
        sdk = _sdk_in_process(server, batch_file, folder / "sdk")
    assert count_images(folder / "out", 1024) == jobs
    assert count_images(folder / "sdk", 1024) == jobs
    print(
        f"## Where a batch job's CPU goes: {jobs} jobs, 1024 x 1024, -j 1, in one process "
        f"after a warm-up batch ({machine_line()})\n"
    )
    rows = [["whole batch (all threads, process CPU)", f"{process / jobs * 1000:.2f}"]]
    rows += [[label, f"{spent[label] / jobs * 1000:.2f}"] for *_, label in STAGES]
    rows.append(["SDK cv_process loop, same jobs, same process", f"{sdk / jobs * 1000:.2f}"])
    print(table(["stage (thread CPU)", "ms per job"], rows))
    print(
        "\nThe volccli imported here is the development install; the sandbox is its own "
        "process. Timing each stage adds a few microseconds per call. The SDK loop (the "
        "script of the CPU section, run in this process after a warm-up) shows what the "
        "same request, decode and plain write cost without start-up.\n"
    )


def _sdk_in_process(server: SandboxProcess, jobs_file: Path, out: Path) -> float:
    """Process CPU of the SDK loop script run in this process, in seconds."""
    import runpy
    import time

    script = out.parent / "sdk_loop.py"
    script.write_text(
        SDK_LOOP.format(access_key=ACCESS_KEY, secret_key=SECRET_KEY, req_key=REQ_KEY)
    )
    out.mkdir(parents=True, exist_ok=True)
    saved = sys.argv
    sys.argv = [str(script), server.host, str(jobs_file), str(out)]
    started = time.process_time()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per section")
    parser.add_argument("--cpu-jobs", type=int, default=500, help="jobs per CPU-section run")
    parser.add_argument("--only", choices=("throughput", "cpu"), help="run one section")
    parser.add_argument(
        "--stages",
        type=int,
        metavar="JOBS",
        help="instead: time the stages of JOBS batch jobs in this process (a profile)",
    )
    args = parser.parse_args()
    if args.stages:
        stages(args.stages)
        return
    install = fresh_install()
    if args.only in (None, "throughput"):
        throughput(install, args.rounds)
        print()
    if args.only in (None, "cpu"):
        cpu_per_job(install, args.rounds, args.cpu_jobs)


if __name__ == "__main__":
    main()
