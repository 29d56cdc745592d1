"""Shell completion: the scripts in completions/ are current, and completion really answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_everyday import invoke

from volccli.cli import completion_cmd

REPO = Path(__file__).resolve().parents[1]
COMPLETIONS = REPO / "completions"


@pytest.mark.parametrize("shell", sorted(completion_cmd.FILES))
def test_the_stored_scripts_are_current(shell: str) -> None:
    name = completion_cmd.FILES[shell]
    stored = (COMPLETIONS / name).read_text(encoding="utf-8")
    assert stored == completion_cmd.script(shell), (
        f"completions/{name} is stale; regenerate it with "
        f"`volccli completion {shell} > completions/{name}`"
    )


@pytest.mark.parametrize("shell", sorted(completion_cmd.FILES))
def test_the_command_prints_the_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = invoke(["completion", shell], capsys)
    assert run.code == 0
    assert run.out == (COMPLETIONS / completion_cmd.FILES[shell]).read_text(encoding="utf-8")
    assert "_VOLCCLI_COMPLETE=complete_" in run.out


def test_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    run = invoke(["completion", "tcsh"], capsys)
    assert run.code == 2
    assert run.out == ""
    assert len(run.err_lines) == 1 and "tcsh" in run.err_lines[0]


def complete(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Answer a completion request in-process, as the shell scripts ask for one."""
    completion_cmd.enable_shell_completion()
    monkeypatch.setenv(completion_cmd.COMPLETE_VAR, env.pop("instruction"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = invoke([], capsys)
    assert run.code == 0, run.err
    return run.out.splitlines()


def bash_words(line: str, cword: int) -> dict[str, str]:
    return {"instruction": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(cword)}


@pytest.mark.parametrize(
    ("line", "cword", "expected"),
    [
        ("volccli txt2", 1, {"txt2img"}),
        ("volccli doc", 1, {"doctor"}),
        ("volccli product", 1, {"product-style"}),
        ("volccli config s", 2, {"set", "show"}),
        ("volccli txt2img --wid", 2, {"--width"}),
        ("volccli edit --on-f", 2, {"--on-filtered"}),
        ("volccli doctor --pro", 2, {"--probe", "--profile"}),
        ("volccli completion ", 2, {"bash", "zsh", "fish"}),
    ],
)
def test_bash_completion_answers(
    line: str,
    cword: int,
    expected: set[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(complete(bash_words(line, cword), capsys, monkeypatch)) == expected


def test_option_values_complete_from_the_documented_choices(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    words = complete(bash_words("volccli txt2img --watermark-position ", 3), capsys, monkeypatch)
    assert words == ["bottom-right", "bottom-left", "top-left", "top-right"]


def test_zsh_and_fish_protocols_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    zsh = complete(
        {"instruction": "complete_zsh", "_TYPER_COMPLETE_ARGS": "volccli txt2img --hei"},
        capsys,
        monkeypatch,
    )
    assert any('"--height"' in line for line in zsh), zsh
    fish = complete(
        {
            "instruction": "complete_fish",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
            "_TYPER_COMPLETE_ARGS": "volccli outp",
        },
        capsys,
        monkeypatch,
    )
    assert [line.split("\t")[0] for line in fish] == ["outpaint"]


def _process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_VOLCCLI")}
    env.update(extra)
    return env


def test_a_real_process_answers_the_completion_protocol() -> None:
    """What the shell scripts run: volccli with _VOLCCLI_COMPLETE set, nothing else."""
    done = subprocess.run(
        [sys.executable, "-m", "volccli"],
        env=_process_env(
            _VOLCCLI_COMPLETE="complete_bash", COMP_WORDS="volccli txt2", COMP_CWORD="1"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["txt2img"]


def test_bash_uses_the_installed_script() -> None:
    """Source completions/volccli.bash in bash and let it complete, as a user's shell would."""
    bash = shutil.which("bash")
    binary = Path(sys.executable).parent / "volccli"
    if bash is None or not binary.exists():
        pytest.skip("needs bash and the volccli console script")
    script = (
        f"source {COMPLETIONS / 'volccli.bash'}\n"
        "COMP_WORDS=(volccli txt2img --wat)\n"
        "COMP_CWORD=2\n"
        "_volccli_completion volccli\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [bash, "--norc", "-c", script],
        env=_process_env(PATH=f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {
        "--watermark",
        "--watermark-position",
        "--watermark-language",
        "--watermark-opacity",
        "--watermark-text",
    }
