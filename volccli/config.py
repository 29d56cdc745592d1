"""Where volccli keeps its files, reading and writing config.toml, and resolving every
setting to a value tagged with where it came from.

Precedence: flag > environment (VOLCCLI_*) > profile in config.toml > the Volcengine
tools' own conventions (VOLC_ACCESSKEY/VOLC_SECRETKEY, VOLCENGINE_*, ~/.volc/credentials,
~/.volc/config, ~/.volcengine/config.json) > built-in default. An access key, its secret
key and session token always come from the same source: mixing halves of two key pairs
can only fail. The settings table and its checks are in settings.py; reading the
Volcengine tools' files is volcengine_credentials.py's job.
"""

import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from .auth import mask
from .errors import ConfigError

# Re-exported: the settings table and its checks, and the Volcengine tools' credentials,
# used to be defined here and are imported from here across the package and its tests.
from .settings import (
    CREDENTIAL_KEYS,
    DEFAULT_ENDPOINT,
    DEFAULT_PROFILE,
    SETTINGS,
    BadValue,
    Bounds,
    Setting,
    check,
    coerce,
    env_error,
    file_error,
    flag_error,
    set_error,
)
from .volcengine_credentials import CredentialSet, unreadable, volcengine_credentials

__all__ = [
    "CONFIG_FILE",
    "CREDENTIAL_KEYS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PROFILE",
    "SETTINGS",
    "BadSettings",
    "BadValue",
    "Bounds",
    "CredentialSet",
    "Resolved",
    "Setting",
    "Value",
    "check",
    "coerce",
    "config_dir",
    "config_path",
    "data_dir",
    "env_error",
    "file_error",
    "file_mode_problems",
    "flag_error",
    "read_config",
    "resolve",
    "set_error",
    "set_value",
    "toml_problem",
    "unset_value",
    "volcengine_credentials",
    "write_config",
]


def _tomllib() -> Any:
    """The TOML parser, imported only once there is a file to parse (most runs have none)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # tomllib is 3.11+; volccli supports 3.10
        import tomli as tomllib
    return tomllib


CONFIG_FILE: Final = "config.toml"

# The TOML parser's messages that quote nothing of the file, and for those that do (a
# character, a key), the words kept: a config file holds secrets, and an error message
# ends up in terminals, CI logs and bug reports.
_TOML_MESSAGES: Final = {
    "Invalid statement": "",
    "Expected newline or end of document after a statement": "",
    "Expected '=' after a key in a key/value pair": "",
    "Expected ']' at the end of a table declaration": "",
    "Expected ']]' at the end of an array declaration": "",
    "Invalid initial character for a key part": "",
    "Cannot overwrite a value": "a value given twice",
    "Cannot declare": "a table or key given twice",
    "Duplicate inline table key": "a key given twice",
    "Cannot mutate immutable namespace": "a table or key given twice",
    "Cannot redefine namespace": "a table or key given twice",
    "Unclosed array": "",
    "Unclosed inline table": "",
    "Unterminated string": "",
    "Unescaped '\\' in a string": "",
    "Invalid hex value": "",
    "Escaped character is not a Unicode scalar value": "",
    "Found invalid character": "an invalid character",
    "Illegal character": "a character not allowed there",
    "Invalid date or datetime": "",
    "Invalid value": "",
}
_TOML_POSITION: Final = re.compile(r"\((at line \d+, column \d+|at end of document)\)\s*$")


def toml_problem(exc: Exception) -> str:
    """What the TOML parser found wrong and where, without any text of the file."""
    text = str(exc)
    found = _TOML_POSITION.search(text)
    where = found.group(1) if found else ""
    message = text[: found.start()].strip() if found else ""
    said = ""
    for known, kept in _TOML_MESSAGES.items():
        # A message with something of the file after the known words keeps only ``kept``.
        if message == known or (kept and message.startswith(known + " ")):
            said = kept or known[0].lower() + known[1:]
            break
    return ", ".join(part for part in (said, where) if part) or "cannot be parsed"


class Value(NamedTuple):
    value: Any
    source: str  # "flag --base-url", "env VOLCCLI_API_KEY", "profile 'x' (path)", ...


# --- locations ----------------------------------------------------------------------


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    override = env.get("VOLCCLI_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_config_path("volccli")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / CONFIG_FILE


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    override = env.get("VOLCCLI_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_data_path("volccli")


# --- the config file ----------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    """Parse config.toml; a missing file is an empty config."""
    try:
        # utf-8-sig: a file saved by Notepad starts with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problem, fix = unreadable(path, exc)
        raise ConfigError(problem, f"{fix}, or delete it and use `volccli config set`") from None
    tomllib = _tomllib()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({toml_problem(exc)})",
            "fix the file, or delete it and use `volccli config set`",
        ) from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or any(not isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(
            f"{path}: [profiles] must hold tables like [profiles.default]",
            "fix the file, or delete it and use `volccli config set`",
        )
    return data


def write_config(path: Path, data: Mapping[str, Any]) -> None:
    """Write atomically, 0600 in a 0700 folder: the file holds secrets.

    A config file that is a link (kept with one's dotfiles) is written where it points,
    so the link stays; the folder it lies in is left as its owner set it up."""
    import tomli_w

    if path.is_symlink():
        path = Path(os.path.realpath(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            tomli_w.dump(dict(data), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    os.chmod(path, 0o600)


def set_value(path: Path, profile: str, key: str, value: Any) -> None:
    setting = SETTINGS.get(key)
    if setting is None:
        raise ConfigError(f"unknown setting {key!r}", f"known settings: {', '.join(SETTINGS)}")
    checked = coerce(setting, value)
    data = read_config(path)
    data.setdefault("profiles", {}).setdefault(profile, {})[key] = checked
    write_config(path, data)


def unset_value(path: Path, profile: str, key: str) -> bool:
    data = read_config(path)
    section = data.get("profiles", {}).get(profile, {})
    if key not in section:
        return False
    del section[key]
    write_config(path, data)
    return True


# --- resolution ---------------------------------------------------------------------


@dataclass
class Resolved:
    """Every setting with its value and source, plus problems found on the way."""

    profile: str
    profile_source: str
    path: Path
    values: dict[str, Value] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sandbox: bool = False
    # Settings whose value from the environment or the config file is not valid
    # (only with strict=False; otherwise resolve() raises BadSettings).
    problems: dict[str, ConfigError] = field(default_factory=dict)
    # Notes about the Volcengine tools' credential sources that were skipped (also in
    # ``notes``): why "no credentials" when a key file is there but unusable.
    skipped_credentials: list[str] = field(default_factory=list)

    def get(self, name: str) -> Any:
        found = self.values.get(name)
        return None if found is None else found.value

    def pick(self, name: str, given: Any, flag: str = "") -> Any:
        """A flag's value, checked against the setting's rules (a usage error, exit 2,
        naming ``flag``), or, when the flag was not given, the resolved value."""
        if given is None:
            return self.get(name)
        setting = SETTINGS[name]
        return _flag_value(setting, flag or setting.flag, given)

    def source(self, name: str) -> str:
        found = self.values.get(name)
        return "" if found is None else found.source

    def shown(self, name: str) -> str:
        """The value as it may be printed: secrets masked."""
        value = self.get(name)
        if value is None:
            return ""
        if SETTINGS[name].secret:
            return "****" if value else ""
        if name == "access_key":
            return mask(str(value))
        text = str(value)
        if name in ("base_url", "endpoint") and "@" in text.partition("://")[2].partition("/")[0]:
            # user:password@ in a URL (refused when used) is not printed either.
            scheme, _, rest = text.partition("://")
            return f"{scheme}://****@{rest.partition('@')[2]}"
        return text


class BadSettings(ConfigError):
    """Settings from the environment or the config file that are not valid, every one of
    them (``problems``, by setting name); the message is the first one's."""

    def __init__(self, problems: Mapping[str, ConfigError]) -> None:
        self.problems = dict(problems)
        first = next(iter(self.problems.values()))
        hint = first.hint
        if len(self.problems) > 1:
            more = len(self.problems) - 1
            hint += (
                f" ({more} more bad setting{'s' if more > 1 else ''}: `volccli doctor` lists all)"
            )
        super().__init__(first.message, hint)


def resolve(
    flags: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    strict: bool = True,
) -> Resolved:
    """Resolve every setting; ``flags`` maps setting names to values given on argv.

    ``strict=False`` (for `config show`) turns an incomplete key pair into a note instead
    of an error, so a half-configured profile can still be looked at.
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    path = config_path(env)
    data = read_config(path)
    profiles = data.get("profiles", {})
    if flags.get("profile"):
        name, name_source = flags["profile"], "flag --profile"
    elif env.get("VOLCCLI_PROFILE"):
        name, name_source = env["VOLCCLI_PROFILE"], "env VOLCCLI_PROFILE"
    else:
        name, name_source = DEFAULT_PROFILE, "default"
    # The default profile needs no section: naming it explicitly is never an error.
    if name_source != "default" and name != DEFAULT_PROFILE and name not in profiles:
        known = ", ".join(sorted(profiles)) or "none yet"
        raise ConfigError(
            f"unknown profile {name!r} (from {name_source}; profiles in {path}: {known})",
            f"create it with `volccli config set --profile {name} KEY VALUE` or pick a known one",
        )
    section = profiles.get(name, {})
    resolved = Resolved(profile=name, profile_source=name_source, path=path)
    for key in data:
        if key != "profiles":
            # A hand-written [default] or a setting at the top level is never read.
            resolved.notes.append(
                f"{path}: {key!r} is outside [profiles.NAME] and is ignored; "
                f"move it under [profiles.{DEFAULT_PROFILE}] (or use `volccli config set`)"
            )
    for key in section:
        if key not in SETTINGS:
            resolved.notes.append(f"{path}: profile {name!r} has unknown setting {key!r}")
    for key, setting in SETTINGS.items():
        if key in CREDENTIAL_KEYS:
            continue
        if flags.get(key) is not None:
            # A bad flag is a usage error, raised at once: it comes before the config.
            value = _flag_value(setting, setting.flag, flags[key])
            resolved.values[key] = Value(value, f"flag {setting.flag}")
            continue
        from_env = bool(env.get(setting.env))
        if from_env:
            raw, source = env[setting.env], f"env {setting.env}"
        elif key in section:
            raw, source = section[key], f"profile {name!r} ({path})"
        else:
            if setting.default is not None:
                resolved.values[key] = Value(setting.default, "default")
            continue
        try:
            value = check(setting, raw)
        except BadValue as bad:
            resolved.problems[key] = (
                env_error(setting, raw, bad)
                if from_env
                else file_error(setting, raw, bad, path, name)
            )
            value = raw  # kept as given, for `config show`
        resolved.values[key] = Value(value, source)
    if resolved.problems:
        if strict:
            raise BadSettings(resolved.problems)
        for error in resolved.problems.values():
            resolved.notes.append(f"{error.message}; {error.hint}")
    _resolve_credentials(resolved, env, section, name, path, home, strict=strict)
    return resolved


def _flag_value(setting: Setting, flag: str, raw: Any) -> Any:
    """A bad value typed on the command line is a usage error (exit 2), not a config one."""
    try:
        return check(setting, raw)
    except BadValue as bad:
        raise flag_error(setting, flag, raw, bad) from None


def _resolve_credentials(
    resolved: Resolved,
    env: Mapping[str, str],
    section: Mapping[str, Any],
    profile: str,
    path: Path,
    home: Path,
    *,
    strict: bool,
) -> None:
    tiers: list[tuple[Callable[[str], Any], str, bool]] = [
        (lambda key: env.get(SETTINGS[key].env), "env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY", True),
        (lambda key: section.get(key), f"profile {profile!r} ({path})", False),
    ]
    for lookup, source, from_env in tiers:
        found: dict[str, str] = {}
        for key in CREDENTIAL_KEYS:
            raw = lookup(key)
            if raw is None:
                continue
            setting = SETTINGS[key]
            try:
                found[key] = check(setting, raw)  # text, with surrounding whitespace dropped
            except BadValue as bad:
                # A TOML list or table is no key; the message masks the value.
                error = (
                    env_error(setting, raw, bad)
                    if from_env
                    else file_error(setting, raw, bad, path, profile)
                )
                if strict:
                    raise BadSettings({key: error}) from None
                resolved.problems[key] = error
                resolved.notes.append(f"{error.message}; {error.hint}")
                return
        ak, sk = found.get("access_key"), found.get("secret_key")
        if ak or sk:
            if not (ak and sk):
                missing = "secret_key" if ak else "access_key"
                problem = f"{source} gives one half of a key pair: {missing} is missing"
                # The pair is taken whole from one place, never half from each.
                if from_env:
                    given = "access_key" if ak else "secret_key"
                    fix = (
                        f"export {SETTINGS[missing].env} too, or unset "
                        f"{SETTINGS[given].env} to use a pair from the config"
                    )
                else:
                    named = "" if profile == DEFAULT_PROFILE else f"--profile {profile} "
                    fix = f"set it in the same profile: `volccli config set {named}{missing}`"
                if strict:
                    raise ConfigError(problem, fix)
                resolved.notes.append(f"{problem}; {fix}")
                continue
            resolved.values["access_key"] = Value(ak, source)
            resolved.values["secret_key"] = Value(sk, source)
            token = found.get("session_token")
            if token:
                resolved.values["session_token"] = Value(token, source)
            return
    skipped: list[str] = []
    found = volcengine_credentials(env, home, skipped)
    resolved.notes.extend(skipped)
    resolved.skipped_credentials = skipped
    if found:
        resolved.values["access_key"] = Value(found.access_key, found.source)
        resolved.values["secret_key"] = Value(found.secret_key, found.source)
        if found.session_token:
            resolved.values["session_token"] = Value(found.session_token, found.source)
        if found.region and resolved.source("region") == "default":
            resolved.values["region"] = Value(found.region, found.region_source or found.source)


def file_mode_problems(path: Path) -> list[str]:
    """Permissions that let other users read the secrets."""
    problems = []
    for target, wanted in ((path.parent, 0o700), (path, 0o600)):
        if not target.exists() or os.name != "posix":
            continue
        mode = stat.S_IMODE(target.stat().st_mode)
        if mode & 0o077:
            problems.append(
                f"{target} is {oct(mode)}, readable by others; run chmod {oct(wanted)[2:]} {target}"
            )
    return problems
