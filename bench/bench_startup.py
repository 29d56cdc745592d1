"""Start-up: `volccli --help` and `volccli --version` next to a minimal Typer app with
the same number of top-level commands, and what each of them imports.

    python bench/bench_startup.py [--runs 25]

The bar: each ratio is at most 1.2, and neither command imports requests, Pillow or
the sandbox. A ratio is the median of the per-round ratios (volccli's time over the
minimal app's in the same round of interleaved runs; see benchlib.paired_ratio); the
ratio of the two medians is shown beside it. Both apps run from the same fresh venv
(bench/out/venv, volccli installed from a wheel, not editable), both from bytecode, each
through a console-script launcher of the same form. A third row shows the editable
install in the development venv for comparison; it is not part of the bar.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    Install,
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
    spread_ms,
    table,
    verdict,
    workdir,
)

BAR = 1.2
FORBIDDEN = ("requests", "PIL", "volccli.sandbox")
MINI_APP = '''"""A minimal Typer app: {count} commands with a one-line help, and --version."""

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _version(value: bool) -> None:
    if value:
        typer.echo("miniapp 1.0")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """A minimal app."""

{commands}

def main() -> None:
    app()
'''
COMMAND = '''
@app.command("{name}")
def command_{index}(name: str = "x") -> None:
    """Command number {index}: does one small thing."""
    typer.echo(name)
'''


def top_level_commands(install: Install, env: dict[str, str]) -> list[str]:
    """Command names listed by `volccli --help` (every panel but Options)."""
    text = subprocess.run(
        [str(install.volccli), "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    names: list[str] = []
    panel = ""
    for line in text.splitlines():
        title = re.match(r"^╭─ (.+?) ─", line)
        if title:
            panel = title[1]
            continue
        entry = re.match(r"^│ ([a-z][a-z0-9-]*)\s{2,}\S", line)
        if entry and panel != "Options":
            names.append(entry[1])
    return names


def write_mini_app(install: Install, count: int) -> Path:
    """The app as a module in the fresh venv, with a launcher shaped like volccli's."""
    commands = "".join(COMMAND.format(name=f"command-{i}", index=i) for i in range(count))
    module = install.site / "bench_miniapp.py"
    module.write_text(MINI_APP.format(count=count, commands=commands))
    compile_tree(install.site)
    launcher = install.script("bench-miniapp")
    template = install.volccli.read_text()
    launcher.write_text(
        template.replace("from volccli.cli import main", "from bench_miniapp import main")
    )
    shutil.copymode(install.volccli, launcher)
    assert "bench_miniapp" in launcher.read_text(), "unexpected console-script launcher"
    return launcher


def imports_of(python: Path, module: str, argv: list[str], env: dict[str, str]) -> set[str]:
    """Modules a command imports, from `python -X importtime`."""
    code = f"import sys; sys.argv = {argv!r}; from {module} import main; main()"
    done = subprocess.run(
        [str(python), "-X", "importtime", "-c", code], capture_output=True, text=True, env=env
    )
    found = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            found.add(line.rsplit("|", 1)[1].strip())
    return found


def forbidden_in(modules: set[str]) -> list[str]:
    return sorted(
        name for name in FORBIDDEN if any(m == name or m.startswith(name + ".") for m in modules)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    install = fresh_install()
    home = workdir("startup")
    env = client_env(home)
    names = top_level_commands(install, env)
    mini = write_mini_app(install, len(names))
    editable = Path(sys.executable).parent / "volccli"
    variants: dict[str, Callable[[int], Run]] = {}
    for flag in ("--help", "--version"):
        variants[f"volccli {flag}"] = _runner([str(install.volccli), flag], env, home)
        variants[f"minimal app {flag}"] = _runner([str(mini), flag], env, home)
        if editable.exists():
            variants[f"volccli {flag} (editable)"] = _runner([str(editable), flag], env, home)
    series = interleaved(variants, args.runs)

    print(f"## Start-up ({args.runs} interleaved runs each; {machine_line()})\n")
    print(
        f"volccli --help lists {len(names)} top-level commands ({', '.join(names)}); "
        f"the minimal Typer app has {len(names)}.\n"
    )
    rows = []
    ok = True
    for flag in ("--help", "--version"):
        base = series[f"minimal app {flag}"]
        for name in (f"minimal app {flag}", f"volccli {flag}", f"volccli {flag} (editable)"):
            if name not in series:
                continue
            s = series[name]
            ratio = paired_ratio(s.seconds, base.seconds)
            barred = name == f"volccli {flag}"
            if barred:
                ok &= ratio <= BAR
            rows.append(
                [
                    name,
                    f"{median(s.seconds) * 1000:.0f}",
                    spread_ms(s.seconds),
                    f"{ratio:.2f}",
                    ratio_spread(s.seconds, base.seconds),
                    f"{median(s.seconds) / median(base.seconds):.2f}",
                    f"{median(s.cpu_seconds) * 1000:.0f}",
                    f"{paired_ratio(s.cpu_seconds, base.cpu_seconds):.2f}",
                    (verdict(ratio <= BAR) + f" (<= {BAR})") if barred else "",
                ]
            )
    print(
        table(
            [
                "command",
                "median ms",
                "p25–p75 ms",
                "ratio",
                "ratio p25–p75",
                "ratio of medians",
                "CPU ms",
                "CPU ratio",
                "bar (ratio)",
            ],
            rows,
        )
    )
    print()
    import_rows = []
    for flag in ("--help", "--version"):
        modules = imports_of(install.python, "volccli.cli", ["volccli", flag], env)
        bad = forbidden_in(modules)
        ok &= not bad
        import_rows.append(
            [
                f"volccli {flag}",
                len(modules),
                ", ".join(bad) or "none",
                verdict(not bad),
            ]
        )
    mini_modules = imports_of(install.python, "bench_miniapp", ["bench-miniapp", "--help"], env)
    import_rows.append(["minimal app --help", len(mini_modules), "", ""])
    print(
        table(
            ["command", "modules imported", "of requests, PIL, volccli.sandbox", "bar"],
            import_rows,
        )
    )
    print(f"\nstart-up bar: {verdict(ok)}")


def _runner(argv: list[str], env: dict[str, str], cwd: Path) -> Callable[[int], Run]:
    def run(index: int) -> Run:
        return measure(argv, env=env, cwd=cwd)

    return run


if __name__ == "__main__":
    main()
