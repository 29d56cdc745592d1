"""`volccli sandbox serve` as a real subprocess, and its options against SandboxConfig."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import typer

from volccli.cli.sandbox_cmd import app
from volccli.sandbox import SandboxConfig
from volccli.sandbox.config import ENV_PREFIX, KNOBS, parse_latency

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-c", "from volccli.cli.sandbox_cmd import app; app()", "serve"]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _ctrl_c_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_binds_prints_its_url_and_stops_cleanly() -> None:
    # A shell starts background jobs with Ctrl-C ignored, and children inherit that: the
    # default action is restored so that SIGINT is Ctrl-C here however the suite was started.
    process = subprocess.Popen([*SERVE, "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=_env(VOLCCLI_SANDBOX_QPS="3",
                                        VOLCCLI_SANDBOX_API_KEY="env-key"),
                               preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        announced = [process.stdout.readline() for _ in range(11)]
        stats = requests.get(f"{url}/__sandbox/stats", timeout=5).json()
        assert stats["config"]["qps"] == 3.0  # from the environment
        response = requests.post(f"{url}/volcv/v1?Action=CVProcess&Version=2022-08-31",
                                 json={"req_key": "high_aes_general_v14", "prompt": "cli"},
                                 headers={"Authorization": "Bearer env-key"}, timeout=10)
        assert response.json()["code"] == 10000
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=10)
        finally:
            process.kill()
    assert process.returncode in (0, 130)
    assert "Traceback" not in err
    assert out == ""  # nothing after the announcement
    assert any(f"VOLCCLI_BASE_URL={url} VOLCCLI_API_KEY=env-key" in line for line in announced)
    assert "sandbox stopped" in err


def test_serve_refuses_a_remote_host_without_allow_remote() -> None:
    done = subprocess.run([*SERVE, "--host", "0.0.0.0", "--port", "0"], cwd=ROOT,
                          capture_output=True, text=True, env=_env(), timeout=30)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a loopback address" in lines[0] and "--allow-remote" in lines[0]


def test_help_imports_neither_pillow_nor_the_sandbox_server() -> None:
    code = (
        "import sys\n"
        "from volccli.cli.sandbox_cmd import app\n"
        "try:\n    app(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'PIL' in sys.modules, 'volccli.sandbox.server' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env=_env(COLUMNS="200"), timeout=30)
    assert "--error-rate" in done.stdout
    assert "LOADED False False" in done.stdout


def test_options_match_the_config_defaults_and_env_names() -> None:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = {param.name: param for param in command.params}
    defaults = SandboxConfig()
    for knob in KNOBS:
        assert knob in params, f"no option for the {knob} knob"
        param = params[knob]
        assert param.envvar == ENV_PREFIX + knob.upper()
        assert param.help, knob
        default = getattr(defaults, knob)
        if knob == "latency":
            assert parse_latency(param.default) == parse_latency(default)
        elif knob == "extra_req_keys":
            assert tuple(param.default or ()) == default
        else:
            assert param.default == default, knob
    fields = {field.name for field in dataclasses.fields(SandboxConfig)}
    assert fields == set(KNOBS) | {"host", "port", "allow_remote"}


def test_the_readme_script_that_starts_a_sandbox_on_any_port_works(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- sandbox-script -->\n```sh\n", 1)[1].split("```", 1)[0]
    assert "# … volccli commands …" in block
    script = block.replace("# … volccli commands …", 'volccli txt2img "scripted fox" -o out -q')
    script += 'wait "$sandbox"; echo "serve exited $?"\n'
    shim = tmp_path / "bin" / "volccli"  # the console script, as an install makes it
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m volccli "$@"\n')
    shim.chmod(0o755)
    env = _env(PATH=f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["VOLCCLI_DATA_DIR"] = str(tmp_path / "data")
    env["VOLCCLI_CONFIG_DIR"] = str(tmp_path / "config")
    done = subprocess.run(
        [bash, "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = Path(done.stdout.splitlines()[0])
    assert written.name.startswith("txt2img_scripted-fox_") and written.is_file()
    assert done.stdout.splitlines()[-1] == "serve exited 0"


def test_the_built_in_sandbox_takes_its_knobs_from_the_environment(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    faulty = run_cli(
        ["--sandbox", "txt2img", "fox", "-o", tmp_path, "--json"],
        env={"VOLCCLI_SANDBOX_ERROR_RATE": "1", "VOLCCLI_SANDBOX_API_KEY": "env-key"},
    )
    assert faulty.exit_code == 7  # every request answered 50500, as the variable asked
    assert "50500" in faulty.stderr and "env-key" not in faulty.stdout + faulty.stderr
    bad = run_cli(
        ["--sandbox", "txt2img", "fox", "-o", tmp_path], env={"VOLCCLI_SANDBOX_ERROR_RATE": "x"}
    )
    assert bad.exit_code == 3
    assert bad.stderr.startswith("volccli: error: VOLCCLI_SANDBOX_ERROR_RATE: ")
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_on_a_port_in_use_says_how_to_get_a_free_one() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*SERVE, "--port", str(port)], cwd=ROOT, capture_output=True,
                              text=True, env=_env(), timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().endswith("pick another --port, or --port 0 for a free one")
    assert done.stderr.count("\n") == 1
