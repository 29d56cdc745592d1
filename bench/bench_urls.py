"""URL results: `volccli txt2img --return-url -n 4` with results of about 1 MB and 8 MB
each (sandbox --result-padding), to show that downloads are streamed.

    python bench/bench_urls.py [--runs 5]

The bar: peak RSS does not grow with the size of the results. Each run downloads four
images; going from four 1 MB to four 8 MB results adds 28 MB of downloads, so a client
that held even one result in memory would grow by 7 MB or more. The bar holds when the
growth stays under a quarter of one result's growth (1.75 MB). Peak RSS is GNU time's
%M for each process; a run with no padding (results of about 40 KB) is the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    API_KEY,
    Run,
    client_env,
    fresh_install,
    machine_line,
    measure,
    median,
    sandbox,
    table,
    verdict,
    workdir,
)

MB = 1_000_000
SIZES = {"~40 KB (no padding)": 0, "1 MB": 1 * MB, "8 MB": 8 * MB}
COUNT = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    install = fresh_install()
    folder = workdir("urls")
    results: dict[str, list[Run]] = {name: [] for name in SIZES}
    written: dict[str, int] = {}
    with sandbox(install) as server:
        env = client_env(folder / "home", VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY)
        for index in range(-1, args.runs):  # run -1 warms up, and is not counted
            for name, padding in SIZES.items():  # interleaved: every size in each round
                server.configure(result_padding=padding)
                out = folder / "out" / str(padding) / str(index)
                argv = [
                    str(install.volccli), "txt2img", "a lighthouse at dusk", "--return-url",
                    "-n", str(COUNT), "-o", str(out),
                ]  # fmt: skip
                run = measure(argv, env=env, cwd=folder, rss=True)
                if run.returncode != 0:
                    raise SystemExit(f"volccli failed ({name}):\n{run.stderr[-2000:]}")
                files = sorted(out.glob("*.png"))
                assert len(files) == COUNT, files
                written[name] = files[0].stat().st_size
                if index >= 0:
                    results[name].append(run)
        downloads = server.stats().get("downloads_with_credentials")
    print(
        f"## URL results: txt2img --return-url -n {COUNT} ({args.runs} interleaved runs each; "
        f"{machine_line()})\n"
    )
    base = median([run.max_rss_kb / 1024 for run in results["1 MB"]])
    rows = []
    for name, runs in results.items():
        rss = median([run.max_rss_kb / 1024 for run in runs])
        rows.append(
            [
                name,
                f"{written[name] / MB:.2f}",
                f"{rss:.1f}",
                f"{min(run.max_rss_kb for run in runs) / 1024:.1f}–"
                f"{max(run.max_rss_kb for run in runs) / 1024:.1f}",
                f"{rss - base:+.1f}",
                f"{median([run.seconds for run in runs]) * 1000:.0f}",
            ]
        )
    print(
        table(
            [
                "result size",
                "each file MB",
                "peak RSS MB",
                "min–max MB",
                "vs 1 MB results",
                "median ms",
            ],
            rows,
        )
    )
    growth = median([r.max_rss_kb / 1024 for r in results["8 MB"]]) - base
    per_image = (written["8 MB"] - written["1 MB"]) / (1024 * 1024)
    ok = growth < per_image / 4
    print(
        f"\n8 MB vs 1 MB results: peak RSS {growth:+.1f} MB while each result grew by "
        f"{per_image:.1f} MB ({COUNT} results per run). Streamed: {verdict(ok)} "
        f"(growth < {per_image / 4:.2f} MB). Downloads that carried credentials: {downloads}."
    )
    print(f"\nURL-results bar: {verdict(ok)}")


if __name__ == "__main__":
    main()
