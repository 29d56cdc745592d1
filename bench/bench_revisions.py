"""Two revisions of volccli side by side: did a change make a command faster or slower?

    python bench/bench_revisions.py BASE [OTHER] [--runs 40] [-- COMMAND ARGS…]

BASE and OTHER are git revisions (OTHER defaults to the working tree, uncommitted
changes included); the command defaults to a txt2img of a 1024 x 1024 image. Each side
is a copy of that revision's `volccli/` package, byte-compiled, run as `python -m
volccli` from the fresh install's interpreter with the copy first on PYTHONPATH, so both
sides import the same requests, Pillow and Typer. The runs are interleaved against one
sandbox process, and the ratio is the median of the per-pair ratios
(benchlib.paired_ratio): the machine's load, which moves single timings by 20 % and
more here, hits both sides of a pair alike. No bar: this measures a change, not volccli.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    API_KEY,
    ROOT,
    Run,
    client_env,
    compile_tree,
    fresh_install,
    interleaved,
    machine_line,
    measure,
    median,
    paired_ratio,
    ratio_spread,
    sandbox,
    spread_ms,
    table,
    workdir,
)

DEFAULT_COMMAND = [
    *("txt2img", "a red bicycle leaning on a wall"),
    *("--width", "1024", "--height", "1024", "--no-validate", "-o", "out"),
]
WORKING_TREE = "working tree"


def package_of(revision: str, folder: Path) -> Path:
    """``folder`` holding the ``volccli`` package as it is at ``revision``, compiled."""
    folder.mkdir(parents=True)
    if revision == WORKING_TREE:
        subprocess.run(["cp", "-r", str(ROOT / "volccli"), str(folder)], check=True)
    else:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "volccli"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
    compile_tree(folder / "volccli")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare against, e.g. HEAD~3")
    parser.add_argument("other", nargs="?", default=WORKING_TREE, help="default: the working tree")
    parser.add_argument("--runs", type=int, default=40)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :] or DEFAULT_COMMAND  # volccli's arguments, after --
    install = fresh_install()
    folder = workdir("revisions")
    sides = {
        args.base: package_of(args.base, folder / "base"),
        args.other: package_of(args.other, folder / "other"),
    }
    print(
        f"## {args.other} against {args.base}: volccli {' '.join(command)} "
        f"({args.runs} interleaved runs each; {machine_line()})\n"
    )
    with sandbox(install, "--lenient-ranges") as server:
        home = folder / "home"

        def variant(path: Path) -> Callable[[int], Run]:
            env = client_env(
                home, VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY, PYTHONPATH=str(path)
            )
            return lambda index: measure(
                [str(install.python), "-m", "volccli", *command], env=env, cwd=folder
            )

        series = interleaved({name: variant(path) for name, path in sides.items()}, args.runs)
    base = series[args.base]
    rows = []
    for name, s in series.items():
        rows.append(
            [
                name,
                f"{median(s.seconds) * 1000:.1f}",
                spread_ms(s.seconds),
                f"{paired_ratio(s.seconds, base.seconds):.3f}",
                ratio_spread(s.seconds, base.seconds),
                f"{median(s.cpu_seconds) * 1000:.1f}",
                f"{paired_ratio(s.cpu_seconds, base.cpu_seconds):.3f}",
            ]
        )
    header = [
        "revision",
        "median ms",
        "p25–p75 ms",
        "ratio",
        "ratio p25–p75",
        "CPU ms",
        "CPU ratio",
    ]
    print(table(header, rows))


if __name__ == "__main__":
    main()
