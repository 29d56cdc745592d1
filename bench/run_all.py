"""Run every benchmark and print all their tables, then one line per bar.

    python bench/run_all.py [--quick]

Each script also runs alone (see bench/README.md). --quick takes fewer runs, for a
smoke test of the scripts themselves; the recorded results use the defaults.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    ("bench_startup.py", ["--runs", "5"]),
    ("bench_request.py", ["--runs", "4"]),
    ("bench_memory.py", ["--runs", "1"]),
    ("bench_urls.py", ["--runs", "1"]),
    ("bench_sandbox.py", ["--requests", "200"]),
    ("bench_batch.py", ["--rounds", "1", "--cpu-jobs", "100"]),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = parser.parse_args()
    verdicts: list[str] = []
    failed: list[str] = []
    for script, quick in SCRIPTS:
        command = [sys.executable, str(HERE / script), *(quick if args.quick else [])]
        shown = " ".join(["python", f"bench/{script}", *command[2:]])
        print(f"$ {shown}", flush=True)
        started = time.monotonic()
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        print(done.stdout, end="" if done.stdout.endswith("\n") else "\n")
        print(f"({time.monotonic() - started:.0f} s)\n", flush=True)
        if done.returncode != 0:
            failed.append(f"{script} exited {done.returncode}")
        verdicts += [
            f"{script}: {line}"
            for line in done.stdout.splitlines()
            if re.match(r"^[\w -]+ bar\b[^:]*: (PASS|FAIL)$", line)
        ]
    print("## Bars\n")
    for line in verdicts:
        print(f"- {line}")
    for line in failed:
        print(f"- {line}")
    print(f"\n(python is {shlex.quote(sys.executable)})")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
