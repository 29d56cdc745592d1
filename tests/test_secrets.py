"""Secret hygiene: the API key, the secret key and the STS token never show up anywhere.

Every command runs with distinctive fake secrets that the sandbox accepts, through
verbose output, dry runs, --print-curl, --json, retries, error paths, batches, tasks,
doctor, config listings, history and inspect. Then stdout, stderr and every file left
behind (images with their embedded recipes, sidecars, the journal, curl body files, the
history database and its journal files) are searched for each secret, raw and encoded
(base64, URL-safe base64, percent-encoded, hex). Result downloads never carry
credentials to the image host.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.helpers import Result, image_bytes, run_cli, write_image
from tests.helpers_everyday import free_port
from tests.helpers_pipelines import write_jsonl
from tests.helpers_proof import files_under, images, leaks
from volccli.errors import ExitCode
from volccli.recipe import embed
from volccli.sandbox import Sandbox, SandboxConfig

# '/', '+' and '=' make the percent-encoded and base64 forms differ from the raw text.
API_KEY = "SK-canary-apikey/Q7+x=Zr4Lm9"
SECRET_KEY = "SK-canary-secret/Wp3+k=Hd8Nv2"
STS_TOKEN = "SK-canary-sts/Tk5+b=Jy1Qe6"
ACCESS_KEY = "AKLTcanaryAccess0001"  # an id, not a secret: it may be shown
WRONG_API_KEY = "SK-canary-wrongkey/Aa1+c=Bb2Cc3"
WRONG_SECRET = "SK-canary-wrongsecret/Zz0+q=Mm2Pp8"
SECRETS = (API_KEY, SECRET_KEY, STS_TOKEN, WRONG_API_KEY, WRONG_SECRET)
TXT2IMG = "high_aes_general_v14"


@pytest.fixture(scope="module")
def canary() -> Iterator[Sandbox]:
    """A sandbox that accepts exactly the fake secrets above."""
    server = Sandbox(
        SandboxConfig(
            host="127.0.0.1",
            port=0,
            api_key=API_KEY,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            session_token=STS_TOKEN,
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def box(canary: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The canary sandbox, reset; work (and --print-curl's body files) in tmp_path."""
    canary.reset()
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return canary


def gateway_env(box: Sandbox, key: str = API_KEY) -> dict[str, str | None]:
    return {"VOLCCLI_BASE_URL": box.base_url, "VOLCCLI_API_KEY": key}


def official_env(box: Sandbox, secret: str = SECRET_KEY) -> dict[str, str | None]:
    return {
        "VOLCCLI_AUTH": "official",
        "VOLCCLI_ENDPOINT": box.base_url,
        "VOLCCLI_ACCESS_KEY": ACCESS_KEY,
        "VOLCCLI_SECRET_KEY": secret,
        "VOLCCLI_SESSION_TOKEN": STS_TOKEN,
    }


@dataclass
class Runs:
    """Every run of a test, to be searched for secrets at the end."""

    env: dict[str, str | None]
    results: list[tuple[list[str], Result]] = field(default_factory=list)

    def __call__(
        self, *args: object, code: int = 0, stdin: str | None = None, **env: str | None
    ) -> Result:
        argv = [str(arg) for arg in args]
        result = run_cli(argv, input=stdin, env={**self.env, **env})
        assert "Traceback" not in result.stderr, result.stderr
        assert result.exit_code == code, (argv, result.stderr)
        self.results.append((argv, result))
        return result

    def leaked(self) -> list[str]:
        found = []
        for argv, result in self.results:
            for stream, text in (("stdout", result.stdout_bytes), ("stderr", result.stderr)):
                for secret in leaks(text, SECRETS):
                    found.append(f"{' '.join(argv)}: {stream} shows {secret}")
        return found


def leaked_files(*folders: Path, skip: Sequence[Path] = ()) -> list[str]:
    """Files under the folders that hold a secret, in any form (the config file aside)."""
    found = []
    for path in files_under(*folders):
        if path in skip:
            continue
        for secret in leaks(path.read_bytes(), SECRETS):
            found.append(f"{path} holds {secret}")
    return found


def everyday_commands(run: Runs, out: Path, tmp_path: Path) -> None:
    """The commands of a working day, each one on its most talkative setting."""
    write_image(tmp_path / "photo.png", 96, 64)
    run("-v", "txt2img", "a red fox", "-o", out, "--seed", "7")
    run("-v", "txt2img", "a red fox", "--dry-run")
    run("txt2img", "a red fox", "--dry-run", "--json")
    curl = run("-v", "edit", tmp_path / "photo.png", "make it blue", "--print-curl")
    assert "volccli-body-" in curl.stdout
    run("txt2img", "a red fox", "--print-curl", "--json")
    run("-v", "edit", tmp_path / "photo.png", "make it blue", "-o", out, "--json")
    run("-v", "txt2img", "a slow fox volccli-fault:50429x1", "-o", out)
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [{"command": "txt2img", "prompt": f"batch fox {n}"} for n in range(3)],
    )
    run("-v", "batch", jobs, "-o", out / "batch", "--json", "--qps", "0")
    submitted = run(
        "-v", "txt2img", "an async fox", "-o", out, "--async", "--json", "--poll-interval", "0.05"
    )
    task_id = submitted.json_lines()[0]["task_id"]
    run("-v", "task", "get", TXT2IMG, task_id)
    run("task", "get", TXT2IMG, task_id, "--json")
    run(
        "-v",
        "task",
        "wait",
        TXT2IMG,
        task_id,
        "-o",
        out / "task",
        "--json",
        "--poll-interval",
        "0.05",
    )
    run("-v", "task", "cancel", TXT2IMG, task_id, "--json", code=ExitCode.REFUSED)  # done
    image = out / "txt2img_a-red-fox_7.png"
    run("-v", "inspect", image)
    run("inspect", image, "--json")
    run("-v", "rerun", image, "--dry-run")
    run("-v", "rerun", image, "-o", out / "again", "--json")
    run("-v", "history", "-n", "0")
    run("history", "--json", "-n", "0")
    run("history", "--search", "fox", "--json")
    run("-v", "doctor", "--probe")
    run("doctor", "--json")
    run("config", "show")
    run("config", "show", "--json")
    for key in ("api_key", "secret_key", "session_token", "access_key"):
        result = run_cli(["config", "get", key], env=run.env)
        assert result.exit_code in (0, 1), result.stderr  # 1: not set in this mode
        run.results.append((["config", "get", key], result))


@pytest.mark.parametrize("mode", ["gateway", "official"])
def test_no_secret_in_any_output_or_file(
    box: Sandbox, tmp_path: Path, isolated_env: Path, mode: str
) -> None:
    env = gateway_env(box) if mode == "gateway" else official_env(box)
    run = Runs(env)
    out = tmp_path / "out"
    everyday_commands(run, out, tmp_path)

    assert len(images(out)) >= 8  # the commands above really ran and wrote their images
    assert list((tmp_path / "tmp").glob("volccli-body-*.json"))  # curl bodies are searched
    assert (out / "batch" / ".volccli-journal.jsonl").is_file()
    history = list((isolated_env / "data").glob("history.db*"))
    assert history
    assert run.leaked() == []
    assert leaked_files(tmp_path, isolated_env) == []
    # The sandbox saw the credentials, so they did travel where they should.
    assert box.stats()["requests"]["CVProcess"].get("ok", 0) >= 6


def test_secrets_kept_in_the_config_file_stay_there(
    box: Sandbox, tmp_path: Path, isolated_env: Path
) -> None:
    run = Runs({"VOLCCLI_ENDPOINT": box.base_url, "VOLCCLI_AUTH": "official"})
    config_dir = isolated_env / "config"
    run("config", "set", "access_key", ACCESS_KEY)
    run("config", "set", "secret_key", "--stdin", stdin=SECRET_KEY + "\n")
    run("config", "set", "session_token", "--stdin", stdin=STS_TOKEN + "\n")
    run("config", "set", "api_key", "--stdin", stdin=API_KEY + "\n")
    config = config_dir / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    # The detector finds them where they belong, so it would find them elsewhere.
    assert set(leaks(config.read_bytes(), SECRETS)) == {API_KEY, SECRET_KEY, STS_TOKEN}

    refused = run("config", "set", "secret_key", WRONG_SECRET, code=ExitCode.USAGE)
    assert "not accepted on the command line" in refused.stderr
    run("config", "set", "--profile", "work", "api_key", WRONG_API_KEY, code=ExitCode.USAGE)
    assert set(leaks(config.read_bytes(), SECRETS)) == {API_KEY, SECRET_KEY, STS_TOKEN}

    out = tmp_path / "out"
    everyday_commands(run, out, tmp_path)
    assert run.leaked() == []
    assert leaked_files(tmp_path, isolated_env, skip=[config]) == []
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700


def test_error_and_retry_paths_never_show_a_secret(
    box: Sandbox, tmp_path: Path, isolated_env: Path
) -> None:
    run = Runs({})
    out = tmp_path / "out"
    wrong_key = gateway_env(box, WRONG_API_KEY)
    wrong_secret = official_env(box, WRONG_SECRET)
    for env in (wrong_key, wrong_secret):
        run("-v", "txt2img", "a fox", "-o", out, code=ExitCode.CONFIG, **env)
        run("txt2img", "a fox", "-o", out, "--json", code=ExitCode.CONFIG, **env)
        run("-v", "doctor", code=ExitCode.CONFIG, **env)
        run("doctor", "--json", code=ExitCode.CONFIG, **env)
        run("-v", "task", "get", TXT2IMG, "1", code=ExitCode.CONFIG, **env)
    mismatch = run("-v", "txt2img", "a fox", "-o", out, code=ExitCode.CONFIG, **wrong_secret)
    assert "SignatureDoesNotMatch" in mismatch.stderr
    for env in (gateway_env(box), official_env(box)):
        run("-v", "txt2img", "volccli-fault:50412", "-o", out, code=ExitCode.AUDIT, **env)
        run("txt2img", "volccli-fault:50412", "--json", code=ExitCode.AUDIT, **env)
        run("-v", "txt2img", "volccli-fault:401relay", code=ExitCode.CONFIG, **env)
        run("-v", "txt2img", "volccli-fault:drop", code=ExitCode.NETWORK, **env)
    # A resend after a server error (a 50429 resend is among the everyday commands).
    resend = ["--retry-server-errors", "--retries", "1"]
    run("-v", "txt2img", "volccli-fault:502x1", *resend, "-o", out, **official_env(box))
    run("-v", "txt2img", "volccli-fault:50500", *resend, code=ExitCode.NETWORK, **gateway_env(box))
    unreachable = f"http://127.0.0.1:{free_port()}"
    run(
        "-v",
        "txt2img",
        "a fox",
        "--retries",
        "0",
        code=ExitCode.NETWORK,
        **{**gateway_env(box), "VOLCCLI_BASE_URL": unreachable},
    )
    run(
        "-v",
        "doctor",
        code=ExitCode.NETWORK,
        **{**official_env(box), "VOLCCLI_ENDPOINT": unreachable},
    )
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"command": "txt2img", "prompt": "fine"},
            {"command": "txt2img", "prompt": "volccli-fault:50412"},
            {"command": "txt2img", "prompt": "volccli-fault:50500"},
        ],
    )
    run(
        "-v",
        "batch",
        jobs,
        "-o",
        out / "batch",
        "--json",
        code=ExitCode.BATCH_FAILED,
        **official_env(box),
    )
    run("-v", "batch", jobs, "-o", out / "wrong", code=ExitCode.CONFIG, **wrong_key)
    run("history", "--json", "-n", "0")

    assert '"type": "failed"' in (out / "batch" / ".volccli-journal.jsonl").read_text()
    assert run.leaked() == []
    assert leaked_files(tmp_path, isolated_env) == []


@pytest.mark.parametrize("mode", ["gateway", "official"])
def test_result_downloads_carry_no_credentials(box: Sandbox, tmp_path: Path, mode: str) -> None:
    run = Runs(gateway_env(box) if mode == "gateway" else official_env(box))
    out = tmp_path / "out"
    run("txt2img", "a linked fox", "--return-url", "-o", out)
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [{"command": "txt2img", "prompt": f"linked {n}", "return_url": True} for n in range(3)],
    )
    run("batch", jobs, "-o", out / "batch", "--qps", "0")
    submitted = run(
        "txt2img",
        "an async linked fox",
        "--async",
        "--return-url",
        "--json",
        "-o",
        out,
        "--poll-interval",
        "0.05",
    )
    task_id = submitted.json_lines()[0]["task_id"]
    run(
        "task",
        "wait",
        TXT2IMG,
        task_id,
        "--return-url",
        "-o",
        out / "task",
        "--poll-interval",
        "0.05",
    )

    stats = box.stats()
    assert stats["downloads"] == 6 and stats["images_served"] == 6
    assert stats["downloads_with_credentials"] == 0
    assert len(images(out)) == 6
    assert run.leaked() == []


def test_config_set_never_echoes_a_secret(isolated_env: Path) -> None:
    run = Runs({})
    run("config", "set", "access_key", ACCESS_KEY)  # a secret key is shown only with its id
    for key, secret in (
        ("api_key", API_KEY),
        ("secret_key", SECRET_KEY),
        ("session_token", STS_TOKEN),
    ):
        refused = run("config", "set", key, secret, code=ExitCode.USAGE)
        assert refused.stderr.count("\n") == 1 and "--stdin" in refused.stderr
        config = isolated_env / "config" / "config.toml"
        assert not config.exists() or secret not in leaks(config.read_bytes(), SECRETS)
        stored = run("config", "set", key, "--stdin", stdin=f"{secret}\n")
        assert f"set {key} = ****" in stored.stderr
        shown = run("config", "get", key)
        assert shown.stdout.strip() == "****"
    listing = json.loads(run("config", "show", "--json").stdout)
    assert {listing["settings"][k]["value"] for k in ("api_key", "secret_key")} == {"****"}
    assert run.leaked() == []
    mode = os.stat(isolated_env / "config" / "config.toml").st_mode
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("secret", [API_KEY, SECRET_KEY, STS_TOKEN])
def test_the_search_finds_every_encoding_of_a_secret(secret: str) -> None:
    raw = secret.encode()
    for prefix in (b"", b"x", b"xy"):
        encoded = base64.b64encode(prefix + raw + b"tail")
        assert leaks(b"noise " + encoded + b" noise", [secret]) == [secret]
        assert leaks(base64.urlsafe_b64encode(prefix + raw + b"tail"), [secret]) == [secret]
    assert leaks(f"key={quote(secret, safe='')}&x=1", [secret]) == [secret]
    assert leaks(raw.hex(), [secret]) == [secret]
    assert leaks(json.dumps({"k": secret}), [secret]) == [secret]
    picture = image_bytes(8, 8)  # a recipe inside a PNG, as volccli embeds it
    assert leaks(embed(picture, {"headers": {"Authorization": secret}}), [secret]) == [secret]
    assert leaks(embed(picture, {"headers": {"Authorization": "****"}}), [secret]) == []
    assert leaks(secret[:-1], [secret]) == []
