"""Settings precedence, credential sources that are never mixed, and the config file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.helpers import run_cli
from volccli.config import (
    BadSettings,
    config_path,
    file_mode_problems,
    resolve,
    set_value,
    write_config,
)
from volccli.errors import ConfigError, ExitCode


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"VOLCCLI_CONFIG_DIR": str(home / "cfg"), **extra}


def write_profile(home: Path, text: str) -> Path:
    path = home / "cfg" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def volc_credentials(home: Path, ak: str = "AK-file", sk: str = "SK-file") -> None:
    (home / ".volc").mkdir(exist_ok=True)
    (home / ".volc" / "credentials").write_text(
        f"[default]\naccess_key_id = {ak}\nsecret_access_key = {sk}\n"
    )


def volc_config(home: Path, ak: str = "AK-json", sk: str = "SK-json") -> None:
    (home / ".volc").mkdir(exist_ok=True)
    (home / ".volc" / "config").write_text(json.dumps({"ak": ak, "sk": sk}))


def volcengine_json(home: Path, **profile: str) -> None:
    (home / ".volcengine").mkdir(exist_ok=True)
    (home / ".volcengine" / "config.json").write_text(
        json.dumps({"current": "work", "profiles": {"work": profile}})
    )


# --- precedence ---------------------------------------------------------------------------


def test_flag_beats_env_beats_profile_beats_default(home: Path) -> None:
    path = write_profile(
        home,
        '[profiles.default]\nbase_url = "https://profile.example"\ntimeout = 30.0\nretries = 5\n',
    )
    env = env_for(home, VOLCCLI_BASE_URL="https://env.example", VOLCCLI_TIMEOUT="45")
    resolved = resolve({"base_url": "https://flag.example"}, env=env, home=home)
    assert resolved.get("base_url") == "https://flag.example"
    assert resolved.source("base_url") == "flag --base-url"
    assert resolved.get("timeout") == 45.0 and resolved.source("timeout") == "env VOLCCLI_TIMEOUT"
    assert resolved.get("retries") == 5
    assert resolved.source("retries") == f"profile 'default' ({path})"
    assert (
        resolved.get("connect_timeout") == 10.0 and resolved.source("connect_timeout") == "default"
    )
    assert resolved.get("endpoint") == "https://visual.volcengineapi.com"


def test_named_profile_from_flag_or_env(home: Path) -> None:
    write_profile(
        home, '[profiles.default]\nregion = "cn-north-1"\n[profiles.work]\nregion = "cn-beijing"\n'
    )
    assert resolve({"profile": "work"}, env=env_for(home), home=home).get("region") == "cn-beijing"
    from_env = resolve({}, env=env_for(home, VOLCCLI_PROFILE="work"), home=home)
    assert from_env.get("region") == "cn-beijing"
    assert from_env.profile_source == "env VOLCCLI_PROFILE"


@pytest.mark.parametrize("where", ["flag", "env"])
def test_unknown_profile_is_refused(home: Path, where: str) -> None:
    write_profile(home, "[profiles.default]\nretries = 1\n")
    flags = {"profile": "nope"} if where == "flag" else {}
    env = env_for(home, **({"VOLCCLI_PROFILE": "nope"} if where == "env" else {}))
    with pytest.raises(ConfigError) as info:
        resolve(flags, env=env, home=home)
    assert info.value.exit_code == ExitCode.CONFIG
    assert "unknown profile 'nope'" in info.value.message
    assert "default" in info.value.message  # the known ones are listed
    assert "volccli config set --profile nope" in info.value.hint


def test_a_missing_default_profile_is_fine(home: Path) -> None:
    assert resolve({}, env=env_for(home), home=home).profile == "default"
    # named explicitly, with no config file at all
    assert resolve({"profile": "default"}, env=env_for(home), home=home).profile == "default"
    from_env = resolve({}, env=env_for(home, VOLCCLI_PROFILE="default"), home=home)
    assert from_env.profile_source == "env VOLCCLI_PROFILE"


@pytest.mark.parametrize(
    "text",
    [
        "[profiles.default\nx = 1\n",
        'base_url = "unterminated\n',
        "profiles = 3\n",
        "[profiles]\ndefault = 1\n",
    ],
)
def test_malformed_toml_is_a_config_error_naming_the_file(home: Path, text: str) -> None:
    path = write_profile(home, text)
    with pytest.raises(ConfigError) as info:
        resolve({}, env=env_for(home), home=home)
    assert str(path) in info.value.message
    assert "config set" in info.value.hint


def test_bad_typed_value_in_env(home: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({}, env=env_for(home, VOLCCLI_TIMEOUT="soon"), home=home)
    assert info.value.message == "VOLCCLI_TIMEOUT=soon: timeout must be a number above 0"
    assert info.value.exit_code == ExitCode.CONFIG


def test_every_problem_is_collected_before_one_is_raised(home: Path) -> None:
    env = env_for(home, VOLCCLI_TIMEOUT="0", VOLCCLI_JOBS="0", VOLCCLI_ACCESS_KEY="AK-env")
    with pytest.raises(BadSettings) as info:
        resolve({}, env=env, home=home)
    messages = [error.message for error in info.value.errors]
    assert messages == [
        "VOLCCLI_TIMEOUT=0: timeout must be above 0",
        "VOLCCLI_JOBS=0: jobs must be at least 1",
        "env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY gives one half of a key pair: "
        "secret_key is missing",
    ]
    assert info.value.message == messages[0]
    assert info.value.hint.endswith("(2 more bad settings: `volccli doctor` lists all)")
    # Without strict, they are kept, and a usable copy falls back to the defaults.
    resolved = resolve({}, env=env, home=home, strict=False)
    assert [error.message for error in resolved.errors] == messages
    assert resolved.get("timeout") == "0"  # as given, for `config show`
    usable = resolved.usable()
    assert (usable.get("timeout"), usable.get("jobs")) == (120.0, 4)
    assert usable.source("timeout").startswith("default")
    assert resolved.get("timeout") == "0"  # the original is left as it was


def test_keep_going_reads_a_broken_config_file_or_a_missing_profile_as_empty(home: Path) -> None:
    path = write_profile(home, "[profiles.default\n")
    env = env_for(home, VOLCCLI_BASE_URL="http://127.0.0.1:9")
    resolved = resolve({}, env=env, home=home, keep_going=True)
    assert resolved.config_problem is not None
    assert f"{path} is not valid TOML" in resolved.config_problem.message
    assert resolved.get("base_url") == "http://127.0.0.1:9"
    write_profile(home, "[profiles.default]\njobs = 2\n")
    with pytest.raises(ConfigError, match="unknown profile 'ghost'"):
        resolve({"profile": "ghost"}, env=env, home=home)
    ghost = resolve({"profile": "ghost"}, env=env, home=home, keep_going=True)
    assert ghost.config_problem is not None and "unknown profile" in ghost.config_problem.message
    assert ghost.get("jobs") == 4  # the default profile's value is not borrowed


def test_notes_of_skipped_credential_files_carry_one_fix_each(home: Path) -> None:
    (home / ".volc").mkdir()
    (home / ".volc" / "credentials").write_text("[other]\nx = 1\n")
    (home / ".volc" / "config").write_text("not json")
    resolved = resolve({}, env=env_for(home, VOLC_ACCESSKEY="AK"), home=home)
    assert [note.fix for note in resolved.warnings] == [
        "export VOLC_SECRETKEY too, or unset VOLC_ACCESSKEY",
        "put access_key_id and secret_access_key under [default], or remove the file",
        "fix the file, or remove it",
    ]
    assert resolved.notes == [note.text for note in resolved.warnings]


def test_an_unknown_setting_gets_the_close_name_or_the_list(home: Path) -> None:
    write_profile(home, "[profiles.default]\nretires = 1\nzzz = 2\n")
    typo, unknown = resolve({}, env=env_for(home), home=home).warnings
    assert "unknown setting 'retires'" in typo.message
    assert typo.fix == "rename it to 'retries', or remove it"
    assert unknown.fix.startswith("remove it from the file (known settings: auth, base_url")


# --- credentials --------------------------------------------------------------------------


def _pair(home: Path, env: dict[str, str] | None = None) -> tuple[str, str, str, str]:
    resolved = resolve({}, env=env or env_for(home), home=home)
    return (
        resolved.get("access_key"),
        resolved.get("secret_key"),
        resolved.source("access_key"),
        resolved.source("secret_key"),
    )


def test_credential_tiers_in_order(home: Path) -> None:
    path = write_profile(
        home, '[profiles.default]\naccess_key = "AK-prof"\nsecret_key = "SK-prof"\n'
    )
    volc_credentials(home)
    volc_config(home)
    volcengine_json(home, **{"access-key": "AK-vj", "secret-key": "SK-vj"})
    env = env_for(
        home,
        VOLCCLI_ACCESS_KEY="AK-env",
        VOLCCLI_SECRET_KEY="SK-env",
        VOLC_ACCESSKEY="AK-volc",
        VOLC_SECRETKEY="SK-volc",
        VOLCENGINE_ACCESS_KEY="AK-ve",
        VOLCENGINE_SECRET_KEY="SK-ve",
    )
    expected = [
        ("AK-env", "SK-env", "env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY"),
        ("AK-prof", "SK-prof", f"profile 'default' ({path})"),
        ("AK-volc", "SK-volc", "env VOLC_ACCESSKEY/VOLC_SECRETKEY"),
        ("AK-ve", "SK-ve", "env VOLCENGINE_ACCESS_KEY/VOLCENGINE_SECRET_KEY"),
        ("AK-file", "SK-file", f"file {home / '.volc' / 'credentials'}"),
        ("AK-json", "SK-json", f"file {home / '.volc' / 'config'}"),
        ("AK-vj", "SK-vj", f"file {home / '.volcengine' / 'config.json'} (profile 'work')"),
    ]
    removals = [
        lambda: [env.pop("VOLCCLI_ACCESS_KEY"), env.pop("VOLCCLI_SECRET_KEY")],
        lambda: path.write_text(""),
        lambda: [env.pop("VOLC_ACCESSKEY"), env.pop("VOLC_SECRETKEY")],
        lambda: [env.pop("VOLCENGINE_ACCESS_KEY"), env.pop("VOLCENGINE_SECRET_KEY")],
        lambda: (home / ".volc" / "credentials").unlink(),
        lambda: (home / ".volc" / "config").unlink(),
        lambda: None,
    ]
    for (ak, sk, source), remove in zip(expected, removals, strict=True):
        assert _pair(home, env) == (ak, sk, source, source)
        remove()
    (home / ".volcengine" / "config.json").unlink()
    assert _pair(home, env) == (None, None, "", "")


def test_half_a_pair_in_env_is_refused_not_completed_from_a_profile(home: Path) -> None:
    write_profile(home, '[profiles.default]\naccess_key = "AK-prof"\nsecret_key = "SK-prof"\n')
    with pytest.raises(ConfigError) as info:
        resolve({}, env=env_for(home, VOLCCLI_ACCESS_KEY="AK-env"), home=home)
    assert "secret_key is missing" in info.value.message
    assert info.value.hint == (
        "export VOLCCLI_SECRET_KEY too, or unset VOLCCLI_ACCESS_KEY to use a pair from the config"
    )
    with pytest.raises(ConfigError, match="access_key is missing"):
        resolve({}, env=env_for(home, VOLCCLI_SECRET_KEY="SK-env"), home=home)


def test_half_a_pair_in_a_profile_is_refused(home: Path) -> None:
    volc_credentials(home)
    write_profile(home, '[profiles.default]\naccess_key = "AK-prof"\n')
    with pytest.raises(ConfigError, match="secret_key is missing") as info:
        resolve({}, env=env_for(home), home=home)
    assert "`volccli config set secret_key`" in info.value.hint


def test_half_a_volc_env_pair_is_skipped_for_a_whole_file_pair(home: Path) -> None:
    volc_credentials(home)
    resolved = resolve({}, env=env_for(home, VOLC_ACCESSKEY="AK-volc"), home=home)
    assert (resolved.get("access_key"), resolved.get("secret_key")) == ("AK-file", "SK-file")
    assert any("VOLC_ACCESSKEY and VOLC_SECRETKEY must both be set" in n for n in resolved.notes)


def test_session_token_comes_with_its_own_pair(home: Path) -> None:
    write_profile(home, '[profiles.default]\naccess_key = "AK-prof"\nsecret_key = "SK-prof"\n')
    # a token in the environment does not belong to the profile's pair
    resolved = resolve({}, env=env_for(home, VOLCCLI_SESSION_TOKEN="TOKEN-env"), home=home)
    assert resolved.get("access_key") == "AK-prof"
    assert resolved.get("session_token") is None
    env = env_for(
        home,
        VOLCCLI_ACCESS_KEY="AK-env",
        VOLCCLI_SECRET_KEY="SK-env",
        VOLCCLI_SESSION_TOKEN="TOKEN-env",
    )
    resolved = resolve({}, env=env, home=home)
    assert resolved.get("session_token") == "TOKEN-env"
    assert resolved.source("session_token") == resolved.source("access_key")


def test_volcengine_region_applies_only_when_not_set(home: Path) -> None:
    volcengine_json(home, **{"access-key": "AK", "secret-key": "SK", "region": "cn-shanghai"})
    assert resolve({}, env=env_for(home), home=home).get("region") == "cn-shanghai"
    env = env_for(home, VOLCCLI_REGION="cn-beijing")
    assert resolve({}, env=env, home=home).get("region") == "cn-beijing"


def test_broken_volcengine_files_are_notes_not_crashes(home: Path) -> None:
    (home / ".volc").mkdir()
    (home / ".volc" / "credentials").write_text("[other]\nx = 1\n")
    (home / ".volc" / "config").write_text("not json")
    resolved = resolve({}, env=env_for(home), home=home)
    assert resolved.get("access_key") is None
    assert len(resolved.notes) == 2


def test_secrets_are_masked_when_shown(home: Path) -> None:
    env = env_for(
        home,
        VOLCCLI_ACCESS_KEY="AKLTabcdefghijklmnop",
        VOLCCLI_SECRET_KEY="topsecret",
        VOLCCLI_API_KEY="api-key-123",
    )
    resolved = resolve({}, env=env, home=home)
    assert resolved.shown("secret_key") == "****"
    assert resolved.shown("api_key") == "****"
    assert resolved.shown("access_key") == "AKLT…mnop"


# --- the file -----------------------------------------------------------------------------


def test_config_set_writes_0600_in_a_0700_folder(home: Path) -> None:
    env = env_for(home)
    result = run_cli(["config", "set", "base_url", "https://relay.example"], env=env)
    assert result.exit_code == 0, result.stderr
    result = run_cli(["config", "set", "api_key", "--stdin"], input="key-from-stdin\n", env=env)
    assert result.exit_code == 0, result.stderr
    assert "key-from-stdin" not in result.stdout + result.stderr
    path = config_path(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert file_mode_problems(path) == []
    resolved = resolve({}, env=env, home=home)
    assert resolved.get("api_key") == "key-from-stdin"
    assert resolved.get("base_url") == "https://relay.example"
    assert not list(path.parent.glob(".*.tmp"))


def test_config_set_refuses_a_secret_on_the_command_line(home: Path) -> None:
    env = env_for(home)
    result = run_cli(["config", "set", "secret_key", "hunter2"], env=env)
    assert result.exit_code == ExitCode.USAGE
    assert len(result.stderr_lines) == 1 and "--stdin" in result.stderr
    assert "hunter2" not in result.stderr
    assert not config_path(env).exists()


def test_config_show_masks_secrets(home: Path) -> None:
    env = env_for(home)
    run_cli(["config", "set", "secret_key", "--stdin"], input="very-secret\n", env=env)
    run_cli(["config", "set", "access_key", "AKLTabcdefghijkl"], env=env)
    result = run_cli(["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "very-secret" not in result.stdout + result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert settings["secret_key"]["value"] == "****"
    # Numbers stay numbers for the scripts that read it.
    assert settings["timeout"]["value"] == 120.0 and settings["retries"]["value"] == 3


def test_config_set_writes_through_a_linked_config_file(home: Path) -> None:
    env = env_for(home)
    dotfiles = home / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "volccli.toml"
    target.write_text("[profiles.default]\nretries = 1\n")
    path = config_path(env)
    path.parent.mkdir(parents=True, mode=0o700)
    path.symlink_to(target)
    result = run_cli(["config", "set", "timeout", "30"], env=env)
    assert result.exit_code == 0, result.stderr
    assert path.is_symlink() and path.resolve() == target.resolve()  # the link is kept
    assert resolve({}, env=env, home=home).get("timeout") == 30.0
    assert "retries = 1" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not list(dotfiles.glob(".*.tmp")) and not list(path.parent.glob(".*.tmp"))


def test_write_config_tightens_a_loose_folder(home: Path) -> None:
    folder = home / "loose"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "config.toml"
    path.write_text("")
    path.chmod(0o644)
    assert len(file_mode_problems(path)) == 2
    set_value(path, "default", "retries", "2")
    assert file_mode_problems(path) == []
    write_config(path, {"profiles": {"default": {"retries": 4}}})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_settings_outside_a_profile_table_are_named_as_ignored(home: Path) -> None:
    # A hand-written file with [default] or a bare key at the top level reads nothing.
    write_profile(home, 'qps = 2\n[default]\nname = "x"\n[profiles.default]\njobs = 3\n')
    resolved = resolve({}, env=env_for(home), home=home)
    assert resolved.get("qps") == 5.0 and resolved.get("name") is None
    assert resolved.get("jobs") == 3
    ignored = [note for note in resolved.notes if "outside [profiles.NAME]" in note]
    assert len(ignored) == 2
    assert "'qps'" in ignored[0] and "'default'" in ignored[1]
    assert all("[profiles.default]" in note for note in ignored)


def test_a_password_in_a_url_is_never_shown(capsys: pytest.CaptureFixture[str]) -> None:
    from volccli.cli import main

    with pytest.raises(SystemExit):
        main(["--base-url", "http://me:hunter2@127.0.0.1:9", "config", "show"])
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert "http://****@127.0.0.1:9" in captured.out
    for args in (
        ["--base-url", "http://me:hunter2@127.0.0.1:9", "txt2img", "x", "--dry-run"],
        ["config", "set", "base_url", "http://me:hunter2@127.0.0.1:9"],
    ):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        captured = capsys.readouterr()
        assert "hunter2" not in captured.out + captured.err
        assert "carries credentials before '@'" in captured.err
