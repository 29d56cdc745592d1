"""One request end to end: `volccli txt2img` for a 1024 x 1024 PNG (base64 in the answer,
decoded and written to disk) next to the script a user would otherwise write with the
official SDK, and next to a minimal hand-written `requests` script (the floor for Python).

    python bench/bench_request.py [--runs 20]

The bars: volccli's wall time is at most 1.3x the SDK script's and at most 1.5x the
requests script's, each ratio the median of the per-round ratios of interleaved runs
(benchlib.paired_ratio). Every variant is a fresh process from the same venv (volccli
from a wheel, everything byte-compiled) against one sandbox process started with
`volccli sandbox serve --port 0 --lenient-ranges` (1024 is outside txt2img's unconfirmed
[256, 768] range, so volccli sends it with --no-validate and the sandbox accepts it).
The sandbox's synthetic PNG compresses to about 40 KB; real results are photographs of
1-2 MB, so a second section pads each result to about 1.5 MB (--result-padding).

Two rows are there for reference only: the requests script with `import typer` added
(what importing Typer alone costs any Typer CLI) and the same script written as a
one-command Typer app.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    ACCESS_KEY,
    API_KEY,
    SECRET_KEY,
    Install,
    Run,
    SandboxProcess,
    Series,
    client_env,
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
    verdict,
    workdir,
)

SDK_BAR = 1.3
REQUESTS_BAR = 1.5
PROMPT = "a red bicycle leaning on a wall"
REALISTIC_PADDING = 1_500_000

SDK_SCRIPT = '''"""What a user writes with the official SDK: cv_process, decode, write."""
import base64
import sys

from volcengine.visual.VisualService import VisualService

host, target, prompt = sys.argv[1:4]
service = VisualService()
service.set_ak("{access_key}")
service.set_sk("{secret_key}")
service.set_host(host)
service.set_scheme("http")
answer = service.cv_process(
    {{"req_key": "high_aes_general_v14", "prompt": prompt, "width": 1024, "height": 1024}}
)
if answer.get("code") != 10000:
    sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
with open(target, "wb") as out:
    out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))
'''

REQUESTS_SCRIPT = '''"""The floor: post JSON with a Bearer key to the gateway, decode, write."""
import base64
import sys

import requests

url, target, prompt = sys.argv[1:4]
response = requests.post(
    url + "/volcv/v1?Action=CVProcess&Version=2022-08-31",
    json={{"req_key": "high_aes_general_v14", "prompt": prompt, "width": 1024, "height": 1024}},
    headers={{"Authorization": "Bearer {api_key}"}},
    timeout=120,
)
answer = response.json()
if answer.get("code") != 10000:
    sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
with open(target, "wb") as out:
    out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))
'''


TYPER_SCRIPT = '''"""For reference, not a bar: the requests script as a one-command Typer app
(Typer coerces its three str arguments through pydantic)."""
import base64
import sys

import requests
import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(url: str, target: str, prompt: str) -> None:
    response = requests.post(
        url + "/volcv/v1?Action=CVProcess&Version=2022-08-31",
        json={{"req_key": "high_aes_general_v14", "prompt": prompt, "width": 1024, "height": 1024}},
        headers={{"Authorization": "Bearer {api_key}"}},
        timeout=120,
    )
    answer = response.json()
    if answer.get("code") != 10000:
        sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
    with open(target, "wb") as out:
        out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))


app()
'''


def variants(
    install: Install, server: SandboxProcess, folder: Path
) -> dict[str, Callable[[int], Run]]:
    sdk = folder / "sdk_txt2img.py"
    sdk.write_text(SDK_SCRIPT.format(access_key=ACCESS_KEY, secret_key=SECRET_KEY))
    plain = folder / "requests_txt2img.py"
    plain.write_text(REQUESTS_SCRIPT.format(api_key=API_KEY))
    typer_app = folder / "typer_txt2img.py"
    typer_app.write_text(TYPER_SCRIPT.format(api_key=API_KEY))
    # For reference, not a bar: what importing Typer alone adds to the requests script.
    with_typer = folder / "requests_import_typer_txt2img.py"
    with_typer.write_text("import typer  # noqa: F401\n" + REQUESTS_SCRIPT.format(api_key=API_KEY))
    home = folder / "home"
    gateway = client_env(home, VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY)
    signed = client_env(
        home,
        VOLCCLI_ENDPOINT=server.url,
        VOLCCLI_ACCESS_KEY=ACCESS_KEY,
        VOLCCLI_SECRET_KEY=SECRET_KEY,
    )
    scripts_env = client_env(home)

    def out(name: str, index: int) -> Path:
        path = folder / "out" / name / str(index)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def volccli(env: dict[str, str], name: str, *extra: str) -> Callable[[int], Run]:
        def run(index: int) -> Run:
            argv = [
                str(install.volccli),
                *extra,
                "txt2img",
                PROMPT,
                "--width",
                "1024",
                "--height",
                "1024",
                "--no-validate",
                "-o",
                str(out(name, index)),
            ]
            return measure(argv, env=env, cwd=folder)

        return run

    def script(path: Path, address: str, name: str) -> Callable[[int], Run]:
        def run(index: int) -> Run:
            target = out(name, index) / "image.png"
            argv = [str(install.python), str(path), address, str(target), PROMPT]
            return measure(argv, env=scripts_env, cwd=folder)

        return run

    return {
        "SDK script (V4 signed)": script(sdk, server.host, "sdk"),
        "requests script (Bearer)": script(plain, server.url, "requests"),
        "requests script + import typer": script(with_typer, server.url, "import-typer"),
        "requests script as a Typer app": script(typer_app, server.url, "typer"),
        "volccli txt2img (Bearer)": volccli(gateway, "volccli"),
        "volccli txt2img (V4 signed)": volccli(signed, "volccli-signed", "--auth", "official"),
    }


def check_outputs(folder: Path) -> str:
    """Every variant wrote a 1024 x 1024 PNG each run."""
    from PIL import Image

    sizes = set()
    count = 0
    for path in (folder / "out").rglob("*.png"):
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            sizes.add((image.format, image.size))
        count += 1
    assert sizes == {("PNG", (1024, 1024))}, sizes
    return f"{count} files, all 1024 x 1024 PNG"


def section(title: str, series: dict[str, Series], png_bytes: int) -> tuple[float, float]:
    """Print one section's table; return volccli's ratios to the SDK and requests scripts."""
    sdk = series["SDK script (V4 signed)"]
    plain = series["requests script (Bearer)"]
    rows = []
    for name, s in series.items():
        cells = [name, f"{median(s.seconds) * 1000:.0f}", spread_ms(s.seconds)]
        for base in (sdk, plain):
            ratio = paired_ratio(s.seconds, base.seconds)
            cells.append(f"{ratio:.2f} ({ratio_spread(s.seconds, base.seconds)})")
        cells.append(f"{median(s.cpu_seconds) * 1000:.0f}")
        cells.append(f"{paired_ratio(s.cpu_seconds, sdk.cpu_seconds):.2f}")
        rows.append(cells)
    print(f"### {title}: result PNG {png_bytes / 1e6:.2f} MB\n")
    print(
        table(
            [
                "variant",
                "median ms",
                "p25–p75 ms",
                "vs SDK: ratio (p25–p75)",
                "vs requests: ratio (p25–p75)",
                "CPU ms",
                "CPU vs SDK",
            ],
            rows,
        )
    )
    bearer = series["volccli txt2img (Bearer)"]
    vs_sdk = paired_ratio(bearer.seconds, sdk.seconds)
    vs_plain = paired_ratio(bearer.seconds, plain.seconds)
    print(
        f"\nvolccli (Bearer) / SDK script: {vs_sdk:.2f} — {verdict(vs_sdk <= SDK_BAR)} "
        f"(<= {SDK_BAR}); / requests script: {vs_plain:.2f} — "
        f"{verdict(vs_plain <= REQUESTS_BAR)} (<= {REQUESTS_BAR})\n"
    )
    return vs_sdk, vs_plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    install = fresh_install()
    print(
        f"## One request: txt2img 1024 x 1024 ({args.runs} interleaved runs each; "
        f"{machine_line()})\n"
    )
    ratios = []
    with sandbox(install, "--lenient-ranges") as server:
        for title, padding in (("Synthetic result", 0), ("Photo-sized result", REALISTIC_PADDING)):
            folder = workdir(f"request-{padding}")
            server.configure(result_padding=padding)
            series = interleaved(variants(install, server, folder), args.runs)
            png = next((folder / "out" / "requests").rglob("*.png")).stat().st_size
            ratios.append(section(title, series, png))
            print(f"outputs: {check_outputs(folder)}\n")
    sdk_ok = all(vs_sdk <= SDK_BAR for vs_sdk, _ in ratios)
    plain_ok = all(vs_plain <= REQUESTS_BAR for _, vs_plain in ratios)
    shown = "; ".join(f"{a:.2f} / {b:.2f}" for a, b in ratios)
    print(f"volccli vs SDK / vs requests, per section: {shown}\n")
    print(f"one-request bar vs the SDK script (<= {SDK_BAR}): {verdict(sdk_ok)}")
    print(f"one-request bar vs the requests script (<= {REQUESTS_BAR}): {verdict(plain_ok)}")


if __name__ == "__main__":
    main()
