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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from .volcengine_credentials import CredentialSet, Note, unreadable, volcengine_credentials

__all__ = [
    "CONFIG_FILE",
    "CREDENTIAL_KEYS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PROFILE",
    "ENV_PAIR",
    "SETTINGS",
    "BadSettings",
    "BadValue",
    "Bounds",
    "CredentialSet",
    "Note",
    "Resolved",
    "Setting",
    "Unused",
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


class Unused(NamedTuple):
    """A value that is set but not used: a session token apart from its key pair."""

    setting: str
    source: str
    note: Note


@dataclass
class Resolved:
    """Every setting with its value and source, plus problems found on the way."""

    profile: str
    profile_source: str
    path: Path
    values: dict[str, Value] = field(default_factory=dict)
    # What does not stop a command: keys in config.toml that are never read, the
    # Volcengine tools' credential files that were skipped.
    warnings: list[Note] = field(default_factory=list)
    # Values that are set but not used, and why: `config show`, doctor and (in official
    # mode) every command say so, since nothing else would.
    unused: list[Unused] = field(default_factory=list)
    sandbox: bool = False
    # What stops a command; resolve() raises BadSettings with them unless strict=False.
    # Settings whose value from the environment or the config file is not valid, ...
    problems: dict[str, ConfigError] = field(default_factory=dict)
    # ... half a key pair in the environment or a profile, ...
    pair_problems: list[ConfigError] = field(default_factory=list)
    # ... and (only with keep_going=True) a config.toml that cannot be used: unreadable,
    # malformed or without the profile asked for. It is then read as empty.
    config_problem: ConfigError | None = None
    # The Volcengine tools' credential sources that were skipped (also in ``warnings``):
    # why "no credentials" when a key file is there but unusable.
    skipped_credentials: list[Note] = field(default_factory=list)

    @property
    def errors(self) -> list[ConfigError]:
        """Every problem that stops a command, in the order found."""
        first = [self.config_problem] if self.config_problem is not None else []
        return [*first, *self.problems.values(), *self.pair_problems]

    @property
    def notes(self) -> list[str]:
        """Every problem, warning and unused value, one line each (for `config show`)."""
        lines = [f"{error.message}; {error.hint}" for error in self.errors]
        lines += [note.text for note in self.warnings]
        lines += [unused.note.text for unused in self.unused]
        return lines

    def usable(self) -> "Resolved":
        """A copy in which each bad setting falls back to its default (or is unset), so
        that what does not depend on it can still be checked."""
        values = dict(self.values)
        for key in self.problems:
            default = SETTINGS[key].default
            if default is None:
                values.pop(key, None)
            else:
                values[key] = Value(default, "default (the value given is not valid)")
        return replace(self, values=values)

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
    """Settings from the environment or the config file that stop a command, every one
    of them (``errors``); the message is the first one's."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        hint = first.hint
        if len(self.errors) > 1:
            more = len(self.errors) - 1
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
    keep_going: bool = False,
) -> Resolved:
    """Resolve every setting; ``flags`` maps setting names to values given on argv.

    ``strict=False`` (for `config show`) keeps bad values and an incomplete key pair as
    problems instead of raising, so a half-configured profile can still be looked at.
    ``keep_going=True`` (for doctor) also reads an unusable config file, or one without
    the profile asked for, as empty, with the reason in ``config_problem``. A bad flag is
    a usage error and is always raised.
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    path = config_path(env)
    config_problem: ConfigError | None = None
    try:
        data = read_config(path)
    except ConfigError as error:
        if not keep_going:
            raise
        data, config_problem = {}, error
    profiles = data.get("profiles", {})
    if flags.get("profile"):
        name, name_source = flags["profile"], "flag --profile"
    elif env.get("VOLCCLI_PROFILE"):
        name, name_source = env["VOLCCLI_PROFILE"], "env VOLCCLI_PROFILE"
    else:
        name, name_source = DEFAULT_PROFILE, "default"
    # The default profile needs no section: naming it explicitly is never an error.
    if (
        config_problem is None
        and name_source != "default"
        and name != DEFAULT_PROFILE
        and name not in profiles
    ):
        known = ", ".join(sorted(profiles)) or "none yet"
        error = ConfigError(
            f"unknown profile {name!r} (from {name_source}; profiles in {path}: {known})",
            f"create it with `volccli config set --profile {name} KEY VALUE` or pick a known one",
        )
        if not keep_going:
            raise error
        config_problem = error
    section = profiles.get(name, {})
    resolved = Resolved(profile=name, profile_source=name_source, path=path)
    resolved.config_problem = config_problem
    for key in data:
        if key != "profiles":
            # A hand-written [default] or a setting at the top level is never read.
            resolved.warnings.append(
                Note(
                    f"{path}: {key!r} is outside [profiles.NAME] and is ignored",
                    f"move it under [profiles.{DEFAULT_PROFILE}] (or use `volccli config set`)",
                )
            )
    for key in section:
        if key not in SETTINGS:
            resolved.warnings.append(_unknown_setting(path, name, key))
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
    _resolve_credentials(resolved, env, section, name, path, home)
    if strict and not keep_going and resolved.errors:
        raise BadSettings(resolved.errors)
    return resolved


def _unknown_setting(path: Path, profile: str, key: str) -> Note:
    from difflib import get_close_matches

    close = get_close_matches(key, list(SETTINGS), n=1)
    fix = (
        f"rename it to {close[0]!r}, or remove it"
        if close
        else f"remove it from the file (known settings: {', '.join(SETTINGS)})"
    )
    return Note(f"{path}: profile {profile!r} has unknown setting {key!r}", fix)


def _flag_value(setting: Setting, flag: str, raw: Any) -> Any:
    """A bad value typed on the command line is a usage error (exit 2), not a config one."""
    try:
        return check(setting, raw)
    except BadValue as bad:
        raise flag_error(setting, flag, raw, bad) from None


ENV_PAIR: Final = "env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY"


def _resolve_credentials(
    resolved: Resolved,
    env: Mapping[str, str],
    section: Mapping[str, Any],
    profile: str,
    path: Path,
    home: Path,
) -> None:
    """The key pair and its session token, whole from the first source that has a pair.

    Problems (a value that is no key, half a pair) go to ``resolved``; resolve() decides
    whether they stop the command."""
    in_profile = f"profile {profile!r} ({path})"
    tiers: list[tuple[Callable[[str], Any], str, bool]] = [
        (lambda key: env.get(SETTINGS[key].env), ENV_PAIR, True),
        (lambda key: section.get(key), in_profile, False),
    ]
    # Every session token given, by the source of the pair it would be used with.
    tokens: dict[str, str] = {}
    for pair_source, token, token_source in (
        (ENV_PAIR, env.get("VOLCCLI_SESSION_TOKEN"), "env VOLCCLI_SESSION_TOKEN"),
        (in_profile, section.get("session_token"), f"session_token in {in_profile}"),
        (
            "env VOLCENGINE_ACCESS_KEY/VOLCENGINE_SECRET_KEY",
            env.get("VOLCENGINE_SESSION_TOKEN"),
            "env VOLCENGINE_SESSION_TOKEN",
        ),
    ):
        if isinstance(token, str) and token.strip():
            tokens[pair_source] = token_source
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
                resolved.problems[key] = (
                    env_error(setting, raw, bad)
                    if from_env
                    else file_error(setting, raw, bad, path, profile)
                )
                return
        ak, sk = found.get("access_key"), found.get("secret_key")
        if ak or sk:
            if not (ak and sk):
                # The pair is taken whole from one place, never half from each.
                resolved.pair_problems.append(_half_pair(source, ak, from_env, profile))
                continue
            resolved.values["access_key"] = Value(ak, source)
            resolved.values["secret_key"] = Value(sk, source)
            token = found.get("session_token")
            if token:
                resolved.values["session_token"] = Value(token, source)
            _unused_tokens(resolved, tokens, source, profile)
            return
    skipped: list[Note] = []
    found_set = volcengine_credentials(env, home, skipped)
    resolved.warnings.extend(skipped)
    resolved.skipped_credentials = skipped
    if found_set:
        resolved.values["access_key"] = Value(found_set.access_key, found_set.source)
        resolved.values["secret_key"] = Value(found_set.secret_key, found_set.source)
        if found_set.session_token:
            resolved.values["session_token"] = Value(found_set.session_token, found_set.source)
        if found_set.region and resolved.source("region") == "default":
            resolved.values["region"] = Value(
                found_set.region, found_set.region_source or found_set.source
            )
    _unused_tokens(resolved, tokens, found_set.source if found_set else "", profile)


def _half_pair(source: str, ak: str | None, from_env: bool, profile: str) -> ConfigError:
    missing = "secret_key" if ak else "access_key"
    problem = f"{source} gives one half of a key pair: {missing} is missing"
    if from_env:
        given = "access_key" if ak else "secret_key"
        fix = (
            f"export {SETTINGS[missing].env} too, or unset "
            f"{SETTINGS[given].env} to use a pair from the config"
        )
    else:
        named = "" if profile == DEFAULT_PROFILE else f"--profile {profile} "
        fix = f"set it in the same profile: `volccli config set {named}{missing}`"
    return ConfigError(problem, fix)


def _unused_tokens(resolved: Resolved, tokens: Mapping[str, str], used: str, profile: str) -> None:
    """A session token is used only with the pair of its own source (half of one pair
    and the token of another can only fail); one given elsewhere is set and not used,
    which is said rather than left to surface as a refused signature."""
    named = "" if profile == DEFAULT_PROFILE else f"--profile {profile} "
    for pair_source, token_source in tokens.items():
        if pair_source == used:
            continue
        if token_source.startswith("env "):
            remove = f"unset {token_source.removeprefix('env ')}"
        else:
            remove = f"remove it with `volccli config unset {named}session_token`"
        if used:
            why = (
                f"the access key pair comes from {used}, and a token is used only with its own pair"
            )
            fix = f"put the token with that pair ({_token_place(used, named)}), or {remove}"
        else:
            why = "there is no access key pair to go with it"
            fix = f"give the key pair in the same place as the token, or {remove}"
        resolved.unused.append(
            Unused(
                "session_token",
                token_source,
                Note(f"the session token from {token_source} is not used: {why}", fix),
            )
        )


def _token_place(pair_source: str, named: str) -> str:
    """Where the session token goes to be used with the pair from ``pair_source``."""
    if pair_source == ENV_PAIR:
        return "VOLCCLI_SESSION_TOKEN"
    if pair_source.startswith("profile "):
        return f"`volccli config set {named}session_token`"
    if pair_source.startswith("env VOLCENGINE_"):
        return "VOLCENGINE_SESSION_TOKEN"
    if pair_source.startswith("env "):
        # VOLC_ACCESSKEY/VOLC_SECRETKEY have no token variable of their own.
        return "as VOLCCLI_ACCESS_KEY, VOLCCLI_SECRET_KEY and VOLCCLI_SESSION_TOKEN"
    return f"its session token field in {pair_source.removeprefix('file ')}"


def file_mode_problems(path: Path) -> list[str]:
    """Permissions that let other users read the secrets: of the config folder, and of
    the config file when it is one (a folder or a device in its place is another
    problem, reported as such)."""
    problems = []
    for target, wanted, kind in ((path.parent, 0o700, stat.S_ISDIR), (path, 0o600, stat.S_ISREG)):
        if os.name != "posix":
            continue
        try:
            status = target.stat()
        except OSError:
            continue  # absent (or unreachable): nothing to say about its permissions
        if not kind(status.st_mode):
            continue
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            problems.append(
                f"{target} is {oct(mode)}, readable by others; run chmod {oct(wanted)[2:]} {target}"
            )
    return problems
