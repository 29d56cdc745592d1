"""Memory: `volccli edit` with a 20 MB PNG input, next to the official SDK script.

    python bench/bench_memory.py [--runs 5] [--megabytes 20]

The bar: volccli's peak RSS minus its idle RSS is at most 2.5x the input file's size.
Idle is the same command, end to end against the same sandbox, with a 64 x 64 input:
everything volccli imports and sets up for an edit, without the big image. The SDK
script (read the file, b64encode, cv_process, decode and write the result) and a
minimal requests script are measured the same way beside it. Peak RSS is GNU time's
%M for each process (see benchlib.measure). The input is random pixels, so it does
not compress: a 20 MB file is 20 MB on the wire before base64.
"""

from __future__ import annotations

import argparse
import os
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
    client_env,
    fresh_install,
    interleaved,
    machine_line,
    measure,
    median,
    sandbox,
    table,
    verdict,
    workdir,
)

BAR = 2.5
PROMPT = "make the sky purple"

SDK_SCRIPT = '''"""What a user writes with the official SDK: read, b64encode, cv_process, write."""
import base64
import sys

from volcengine.visual.VisualService import VisualService

host, source, target, prompt = sys.argv[1:5]
with open(source, "rb") as handle:
    encoded = base64.b64encode(handle.read()).decode()
service = VisualService()
service.set_ak("{access_key}")
service.set_sk("{secret_key}")
service.set_host(host)
service.set_scheme("http")
answer = service.cv_process(
    {{"req_key": "byteedit_v2.0", "prompt": prompt, "binary_data_base64": [encoded]}}
)
if answer.get("code") != 10000:
    sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
with open(target, "wb") as out:
    out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))
'''

REQUESTS_SCRIPT = '''"""A minimal requests script: read, b64encode, post with a Bearer key."""
import base64
import sys

import requests

url, source, target, prompt = sys.argv[1:5]
with open(source, "rb") as handle:
    encoded = base64.b64encode(handle.read()).decode()
response = requests.post(
    url + "/volcv/v1?Action=CVProcess&Version=2022-08-31",
    json={{"req_key": "byteedit_v2.0", "prompt": prompt, "binary_data_base64": [encoded]}},
    headers={{"Authorization": "Bearer {api_key}"}},
    timeout=120,
)
answer = response.json()
if answer.get("code") != 10000:
    sys.exit(f"failed: {{answer.get('code')}} {{answer.get('message')}}")
with open(target, "wb") as out:
    out.write(base64.b64decode(answer["data"]["binary_data_base64"][0]))
'''


def noise_png(path: Path, megabytes: float) -> int:
    """A PNG of random pixels of about ``megabytes`` MB (it cannot compress)."""
    from PIL import Image

    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        path, format="PNG", compress_level=1
    )
    return path.stat().st_size


def variants(
    install: Install, server: SandboxProcess, folder: Path, image: Path, tag: str
) -> dict[str, Callable[[int], Run]]:
    sdk = folder / "sdk_edit.py"
    sdk.write_text(SDK_SCRIPT.format(access_key=ACCESS_KEY, secret_key=SECRET_KEY))
    plain = folder / "requests_edit.py"
    plain.write_text(REQUESTS_SCRIPT.format(api_key=API_KEY))
    home = folder / "home"
    gateway = client_env(home, VOLCCLI_BASE_URL=server.url, VOLCCLI_API_KEY=API_KEY)
    plain_env = client_env(home)
    limit = str(max(image.stat().st_size * 2, 5_000_000))

    def out(name: str, index: int) -> Path:
        path = folder / "out" / f"{name}-{tag}" / str(index)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def volccli(index: int) -> Run:
        argv = [
            str(install.volccli), "edit", str(image), PROMPT, "--max-image-bytes", limit,
            "--max-image-side", "8192", "-o", str(out("volccli", index)),
        ]  # fmt: skip
        return measure(argv, env=gateway, cwd=folder, rss=True)

    def script(path: Path, address: str, name: str) -> Callable[[int], Run]:
        def run(index: int) -> Run:
            target = out(name, index) / "result.png"
            argv = [str(install.python), str(path), address, str(image), str(target), PROMPT]
            return measure(argv, env=plain_env, cwd=folder, rss=True)

        return run

    return {
        f"volccli edit ({tag})": volccli,
        f"SDK script ({tag})": script(sdk, server.host, "sdk"),
        f"requests script ({tag})": script(plain, server.url, "requests"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--megabytes", type=float, default=20.0)
    args = parser.parse_args()
    install = fresh_install()
    folder = workdir("memory")
    big = folder / "big.png"
    size = noise_png(big, args.megabytes)
    tiny = folder / "tiny.png"
    noise_png(tiny, 64 * 64 * 3 / 1_000_000)
    with sandbox(install) as server:
        runners = {
            **variants(install, server, folder, tiny, "idle"),
            **variants(install, server, folder, big, "big"),
        }
        series = interleaved(runners, args.runs, warmup=1)
    print(
        f"## Memory: edit with a {size / 1e6:.1f} MB PNG input ({args.runs} interleaved runs "
        f"each; {machine_line()})\n"
    )
    rows = []
    ok = True
    for name in ("volccli edit", "SDK script", "requests script"):
        idle = median(series[f"{name} (idle)"].rss_mb)
        peak = median(series[f"{name} (big)"].rss_mb)
        growth = (peak - idle) * 1024 * 1024 / size
        barred = name == "volccli edit"
        if barred:
            ok &= growth <= BAR
        rows.append(
            [
                name,
                f"{idle:.1f}",
                f"{peak:.1f}",
                f"{peak - idle:.1f}",
                f"{growth:.2f}x",
                f"{median(series[f'{name} (big)'].seconds) * 1000:.0f}",
                (verdict(growth <= BAR) + f" (<= {BAR}x)") if barred else "",
            ]
        )
    print(
        table(
            [
                "client",
                "idle peak RSS MB",
                "20 MB peak RSS MB",
                "difference MB",
                "difference / file size",
                "median ms",
                "bar",
            ],
            rows,
        )
    )
    print(
        "\nidle = the same command end to end with a 64 x 64 PNG input. The base64 of the "
        f"input alone is {size * 4 / 3 / 1e6:.1f} MB (1.33x the file)."
    )
    print(f"\nmemory bar: {verdict(ok)}")


if __name__ == "__main__":
    main()
