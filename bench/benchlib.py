"""What the benchmark scripts share: a fresh install, the sandbox process, measured runs,
statistics and tables.

Every measured client is its own process, started from a fresh non-editable install of
volccli (a wheel built from this working tree into bench/out/venv). That venv borrows
the third-party packages of the interpreter running the benchmark through a .pth line,
so volccli, the official SDK and the plain scripts import the very same requests,
Pillow and Typer. Every package a measured process imports is byte-compiled first, so
no side pays for compiling while the other loads cached bytecode. Only loopback
addresses are used.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV = OUT / "venv"
API_KEY = "sandbox-api-key"
ACCESS_KEY = "AKLTsandboxAccessKey"
SECRET_KEY = "sandbox-secret-key"


# --- the fresh install ------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    python: Path
    volccli: Path
    site: Path

    def script(self, name: str) -> Path:
        return self.python.parent / name


def _source_hash() -> str:
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml", *sorted((ROOT / "volccli").rglob("*.py"))]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fresh_install(*, quiet: bool = False) -> Install:
    """A non-editable volccli built from the working tree; rebuilt when the source changes."""
    python = VENV / "bin" / "python"
    site = Path(sysconfig.get_path("purelib", vars={"base": str(VENV), "platbase": str(VENV)}))
    install = Install(python, VENV / "bin" / "volccli", site)
    stamp = VENV / "source.sha256"
    wanted = _source_hash()
    if stamp.exists() and stamp.read_text() == wanted and install.volccli.exists():
        return install
    if not quiet:
        print("building a fresh volccli wheel into bench/out/venv …", file=sys.stderr)
    shutil.rmtree(VENV, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="wheel-", dir=_out()))
    try:
        src = work / "src"
        shutil.copytree(
            ROOT / "volccli", src / "volccli", ignore=shutil.ignore_patterns("__pycache__")
        )
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy2(ROOT / name, src / name)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(src)])
        wheel = next(work.glob("volccli-*.whl"))
        _run([sys.executable, "-m", "venv", "--without-pip", str(VENV)])
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                "--no-compile",
                str(wheel),
            ]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The benchmark interpreter's packages, behind the venv's own (volccli comes first).
    borrowed = sysconfig.get_paths()["purelib"]
    (site / "_bench_dependencies.pth").write_text(borrowed + "\n")
    # Everything a measured process may import loads from bytecode (this machine runs
    # with PYTHONDONTWRITEBYTECODE=1, so nothing would be cached on first use).
    compile_tree(site)
    compile_tree(Path(borrowed))
    stamp.write_text(wanted)
    return install


def compile_tree(path: Path) -> None:
    compileall.compile_dir(str(path), quiet=2, workers=0)


def _out() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


def _run(args: Sequence[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def workdir(name: str) -> Path:
    """A clean folder under bench/out for one benchmark's files."""
    path = _out() / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with no credentials or settings of the person running the bench."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOLCCLI_", "VOLC_", "VOLCENGINE_"))
    }
    env.update(
        HOME=str(home),
        VOLCCLI_CONFIG_DIR=str(home / "config"),
        VOLCCLI_DATA_DIR=str(home / "data"),
        PYTHONDONTWRITEBYTECODE="1",
        COLUMNS="100",
        NO_COLOR="1",
    )
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


# --- the sandbox ------------------------------------------------------------------------


class SandboxProcess:
    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1]

    def configure(self, **knobs: object) -> None:
        request = urllib.request.Request(
            f"{self.url}/__sandbox/config",
            data=json.dumps(knobs).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/__sandbox/stats", timeout=10) as answer:
            data = json.loads(answer.read())
        assert isinstance(data, dict)
        return data


@contextmanager
def sandbox(install: Install, *options: str) -> Iterator[SandboxProcess]:
    """`volccli sandbox serve --port 0 OPTIONS` in its own process; yields its base URL."""
    process = subprocess.Popen(
        [str(install.volccli), "sandbox", "serve", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=client_env(_out()),
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the sandbox did not start: {url!r}")
        yield SandboxProcess(url)
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- measured runs ----------------------------------------------------------------------


@dataclass
class Run:
    seconds: float  # wall time
    cpu_seconds: float  # user + system time of the process and its children
    max_rss_kb: int  # 0 when not measured
    returncode: int
    stdout: str
    stderr: str


TIME = Path("/usr/bin/time")


def measure(args: Sequence[str], *, env: Mapping[str, str], cwd: Path, rss: bool = False) -> Run:
    """Run one process to completion: wall and CPU time and, with ``rss``, its peak RSS.

    The peak RSS comes from GNU time, not from wait4: Linux carries a parent's high-water
    mark over fork and exec into the child's ru_maxrss, so a child of this ~30 MB
    interpreter would never report less than that. time(1) is small, so the floor it
    passes on is about 2 MB. Its own fork and exec (about a millisecond) are in the wall
    time of every variant alike, so timing-only runs go without it. CPU time (from
    wait4) is shown beside wall time: it is far less disturbed by other load.
    """
    if rss and not TIME.exists():
        raise SystemExit("peak RSS needs GNU time at /usr/bin/time (apt-get install time)")
    with tempfile.TemporaryDirectory(prefix="measure-") as scratch:
        out_path, err_path, rss_path = (Path(scratch) / n for n in ("out", "err", "rss"))
        argv = [str(TIME), "-f", "%M", "-o", str(rss_path), *args] if rss else list(args)
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd
            )
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        max_rss = 0
        if rss:
            lines = rss_path.read_text().split()
            max_rss = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        return Run(
            seconds,
            usage.ru_utime + usage.ru_stime,
            max_rss,
            process.returncode,
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
        )


@dataclass
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs]

    @property
    def cpu_seconds(self) -> list[float]:
        return [run.cpu_seconds for run in self.runs]

    @property
    def rss_mb(self) -> list[float]:
        return [run.max_rss_kb / 1024 for run in self.runs]


def interleaved(
    variants: Mapping[str, Callable[[int], Run]], runs: int, *, warmup: int = 2, seed: int = 7
) -> dict[str, Series]:
    """Run every variant ``runs`` times, round-robin in a shuffled order each round, so
    machine noise (another process, a frequency change) is spread over all of them."""
    rng = random.Random(seed)
    names = list(variants)
    for _ in range(warmup):  # page cache, sandbox threads, first connections
        for name in names:
            _checked(name, variants[name](-1))
    series = {name: Series(name) for name in names}
    for index in range(runs):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            series[name].runs.append(_checked(name, variants[name](index)))
    return series


def _checked(name: str, run: Run) -> Run:
    if run.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {run.returncode}:\n{run.stderr[-2000:]}")
    return run


# --- statistics and tables --------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def spread_ms(values: Sequence[float]) -> str:
    """The interquartile range in milliseconds, as 'p25–p75'."""
    lo, hi = quartiles(values)
    return f"{lo * 1000:.0f}–{hi * 1000:.0f}"


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the per-round ratios: each round runs every variant back to back, so
    a ratio within a round sees the same machine load on both sides. With other work on
    the machine this is steadier than the ratio of the two medians (shown beside it)."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


def ratio_spread(numerators: Sequence[float], denominators: Sequence[float]) -> str:
    """p25–p75 of the per-round ratios (rounds ran back to back, so they pair up)."""
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    lo, hi = quartiles(ratios)
    return f"{lo:.2f}–{hi:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine_line() -> str:
    return (
        f"Python {sys.version.split()[0]} on {os.cpu_count()} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
