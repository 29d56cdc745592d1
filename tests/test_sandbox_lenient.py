"""The sandbox's lenient_ranges knob: unconfirmed ranges of the kinds table stop being
enforced, confirmed ones and type checks still are; set by config, option and env."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from volccli import kinds
from volccli.sandbox import API_KEY, Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
VERSION = "2022-08-31"
INVALID_INPUT = 50215


def post(sb: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{sb.base_url}/volcv/v1?Action=CVProcess&Version={VERSION}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )
    answer = response.json()
    assert isinstance(answer, dict)
    return answer


def txt2img(width: int, height: int, **extra: Any) -> dict[str, Any]:
    return {
        "req_key": kinds.TXT2IMG.req_key,
        "prompt": "a lighthouse",
        "width": width,
        "height": height,
        **extra,
    }


def png_b64(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def image_size(answer: dict[str, Any]) -> tuple[int, int]:
    data = base64.b64decode(answer["data"]["binary_data_base64"][0])
    with Image.open(io.BytesIO(data)) as image:
        return image.size


@pytest.fixture
def lenient() -> Iterator[Sandbox]:
    server = Sandbox(SandboxConfig(host="127.0.0.1", port=0, lenient_ranges=True)).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_txt2img_size_range_is_unconfirmed() -> None:
    # What the knob is for: the 1024 px benchmark needs this range to be an unconfirmed one.
    width = next(f for f in kinds.TXT2IMG.fields if f.name == "width")
    assert width.range is not None and not width.range.confirmed
    assert not width.range.contains(1024)


def test_default_sandbox_refuses_an_unconfirmed_range(fresh_sandbox: Sandbox) -> None:
    answer = post(fresh_sandbox, txt2img(1024, 1024))
    assert answer["code"] == INVALID_INPUT
    assert "width" in answer["message"] and "[256, 768]" in answer["message"]


def test_lenient_sandbox_accepts_it_and_draws_that_size(lenient: Sandbox) -> None:
    answer = post(lenient, txt2img(1024, 1024))
    assert answer["code"] == 10000, answer
    assert image_size(answer) == (1024, 1024)


def test_lenient_still_enforces_confirmed_ranges_and_types(lenient: Sandbox) -> None:
    opacity = kinds.TXT2IMG.field("logo_info.opacity")
    assert opacity.range is not None and opacity.range.confirmed
    too_big = post(lenient, txt2img(512, 512) | {"logo_info": {"add_logo": True, "opacity": 1.5}})
    assert too_big["code"] == INVALID_INPUT and "opacity" in too_big["message"]
    wrong_type = post(lenient, txt2img(512, 512) | {"width": "wide"})
    assert wrong_type["code"] == INVALID_INPUT and "width" in wrong_type["message"]


def test_lenient_skips_the_unconfirmed_control_strength(
    lenient: Sandbox, fresh_sandbox: Sandbox
) -> None:
    assert not kinds.CONTROL_STRENGTH.confirmed
    body = {
        "req_key": kinds.CONTROLNET.req_key,
        "prompt": "a cat",
        "binary_data_base64": [png_b64(64, 64)],
        "controlnet_args": [{"type": "canny", "binary_data_index": 0, "strength": 1.5}],
    }
    refused = post(fresh_sandbox, body)
    assert refused["code"] == INVALID_INPUT and "strength" in refused["message"]
    assert post(lenient, body)["code"] == 10000
    body["controlnet_args"][0]["strength"] = "strong"
    assert post(lenient, body)["code"] == INVALID_INPUT


def test_knob_is_live_changeable_and_reset_restores_it(fresh_sandbox: Sandbox) -> None:
    assert fresh_sandbox.configure(lenient_ranges="true")["lenient_ranges"] is True
    assert post(fresh_sandbox, txt2img(1024, 768))["code"] == 10000
    fresh_sandbox.reset()
    assert post(fresh_sandbox, txt2img(1024, 768))["code"] == INVALID_INPUT


def test_from_env_reads_the_variable() -> None:
    config = SandboxConfig.from_env({"VOLCCLI_SANDBOX_LENIENT_RANGES": "1"})
    assert config.lenient_ranges is True
    assert SandboxConfig.from_env({}).lenient_ranges is False
    with pytest.raises(ValueError, match="lenient_ranges"):
        SandboxConfig.from_env({"VOLCCLI_SANDBOX_LENIENT_RANGES": "maybe"})


@pytest.mark.parametrize("how", ["option", "env"])
def test_serve_accepts_the_option_and_the_variable(how: str) -> None:
    args = [sys.executable, "-m", "volccli", "sandbox", "serve", "--port", "0"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "PYTHONPATH": str(ROOT)}
    if how == "option":
        args.append("--lenient-ranges")
    else:
        env["VOLCCLI_SANDBOX_LENIENT_RANGES"] = "true"
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        stats = requests.get(f"{url}/__sandbox/stats", timeout=10).json()
        assert stats["config"]["lenient_ranges"] is True
        answer = requests.post(
            f"{url}/volcv/v1?Action=CVProcess&Version={VERSION}",
            json=txt2img(1024, 1024),
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        ).json()
        assert answer["code"] == 10000
    finally:
        process.terminate()
        process.wait(timeout=10)
