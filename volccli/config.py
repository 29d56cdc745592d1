"""Settings, profiles and credential sources, each value tagged with where it came from.

Precedence: flag > environment (VOLCCLI_*) > profile in config.toml > the Volcengine
tools' own conventions (VOLC_ACCESSKEY/VOLC_SECRETKEY, VOLCENGINE_*, ~/.volc/credentials,
~/.volc/config, ~/.volcengine/config.json) > built-in default. An access key, its secret
key and session token always come from the same source: mixing halves of two key pairs
can only fail.
"""

import json
import math
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from .auth import DEFAULT_REGION, mask
from .errors import ConfigError, InputError


def _tomllib() -> Any:
    """The TOML parser, imported only once there is a file to parse (most runs have none)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # tomllib is 3.11+; volccli supports 3.10
        import tomli as tomllib
    return tomllib


DEFAULT_PROFILE: Final = "default"
DEFAULT_ENDPOINT: Final = "https://visual.volcengineapi.com"
CONFIG_FILE: Final = "config.toml"


class Bounds(NamedTuple):
    """The numbers a setting allows: at least ``low``, or above it when ``strict``."""

    low: float
    strict: bool = False
    note: str = ""

    def allows(self, value: float) -> bool:
        return value > self.low if self.strict else value >= self.low

    def describe(self) -> str:
        text = f"{'above' if self.strict else 'at least'} {self.low:g}"
        return f"{text} ({self.note})" if self.note else text


class BadValue(ValueError):
    """What is wrong with a value, phrased to follow its name ("must be above 0"),
    and, when the problem does not already say it, what would be right."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def _check_template(value: str) -> None:
    # output.py knows the tokens; imported here, once there is a template to check.
    from .output import check_template

    try:
        check_template(value)
    except InputError as error:
        # Its messages name --name; the caller names the flag or the setting instead.
        problem = error.message.removeprefix("--name ").removeprefix(f"{value!r} ")
        raise BadValue(problem, error.hint) from None


def _check_folder(value: str) -> None:
    if value == "-":
        raise BadValue(
            "is stdout, not a folder",
            "give a folder (`-o -` writes one image to stdout for a single command)",
        )


class Setting(NamedTuple):
    name: str
    type: type
    help: str
    default: Any = None
    secret: bool = False
    choices: tuple[str, ...] = ()
    bounds: Bounds | None = None
    # A format check beyond type, choices and bounds; raises BadValue.
    check: Callable[[Any], None] | None = None

    @property
    def env(self) -> str:
        return f"VOLCCLI_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def example(self) -> str:
        """A valid value for messages: the default, else the first choice."""
        value = self.default if self.default is not None else next(iter(self.choices), None)
        if value is None:
            return ""
        return f"{value:g}" if isinstance(value, float) else str(value)


# The one place the valid values of each setting are written down: config set, every
# source that resolve() reads, the commands' flags and doctor all check against it.
SETTINGS: Final[dict[str, Setting]] = {
    s.name: s
    for s in (
        Setting(
            "auth",
            str,
            "How to reach the API: gateway (Bearer key) or official (AK/SK).",
            choices=("gateway", "official"),
        ),
        Setting("base_url", str, "Gateway base URL, e.g. https://relay.example.com."),
        Setting("api_key", str, "Gateway API key.", secret=True),
        Setting("endpoint", str, "Official endpoint.", DEFAULT_ENDPOINT),
        Setting("region", str, "Signing region.", DEFAULT_REGION),
        Setting("access_key", str, "Volcengine access key id (AK)."),
        Setting("secret_key", str, "Volcengine secret access key (SK).", secret=True),
        Setting("session_token", str, "STS session token for temporary keys.", secret=True),
        Setting("timeout", float, "Read timeout in seconds.", 120.0, bounds=Bounds(0, strict=True)),
        Setting(
            "connect_timeout",
            float,
            "Connect timeout in seconds.",
            10.0,
            bounds=Bounds(0, strict=True),
        ),
        Setting(
            "retries", int, "Retries for rate limits and unsent requests.", 3, bounds=Bounds(0)
        ),
        Setting(
            "qps",
            float,
            "Client-side request rate limit (requests per second).",
            5.0,
            bounds=Bounds(0, note="0 = no limit"),
        ),
        Setting("jobs", int, "Requests in flight at once in a batch.", 4, bounds=Bounds(1)),
        Setting("output_dir", str, "Default output folder.", ".", check=_check_folder),
        Setting("name", str, "Default file name template.", check=_check_template),
        Setting(
            "on_exists",
            str,
            "What to do when a file exists.",
            "suffix",
            choices=("suffix", "skip", "overwrite", "fail"),
        ),
        Setting(
            "outpaint_prompt_field",
            str,
            "Body field for the outpaint prompt.",
            "both",
            choices=("prompt", "custom_prompt", "both"),
        ),
        Setting("max_image_bytes", int, "Input image size limit in bytes.", bounds=Bounds(1)),
        Setting("max_image_side", int, "Input image side limit in pixels.", bounds=Bounds(1)),
        Setting("max_aspect", float, "Input image long/short side limit.", bounds=Bounds(1)),
    )
}
CREDENTIAL_KEYS: Final = ("access_key", "secret_key", "session_token")


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path} ({exc})", "fix its permissions or delete it"
        ) from None
    tomllib = _tomllib()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({exc})",
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
    """Write atomically, 0600 in a 0700 folder: the file holds secrets."""
    import tomli_w

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


_KINDS: Final = {int: "a whole number", float: "a number", str: "text"}


def _typed(setting: Setting, raw: Any) -> Any:
    """``raw`` (text from argv or the environment, or a TOML value) as the setting's type."""
    kind = _KINDS.get(setting.type, setting.type.__name__)
    wanted = f"must be {kind}"
    if setting.bounds is not None:
        wanted += f"{'' if setting.bounds.strict else ' of'} {setting.bounds.describe()}"
    # TOML's true would pass int(); a list would pass str(): neither is meant.
    if isinstance(raw, (bool, list, dict)):
        raise BadValue(wanted)
    if setting.type is str:
        return str(raw)
    if setting.type is int and isinstance(raw, float) and not raw.is_integer():
        raise BadValue(wanted)  # int() would silently drop the fraction
    try:
        value = setting.type(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise BadValue(wanted) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BadValue(wanted)
    return value


def check(setting: Setting, raw: Any) -> Any:
    """``raw`` converted to the setting's type and checked against its choices, bounds
    and format; BadValue says what is wrong."""
    value = _typed(setting, raw)
    if setting.choices and value not in setting.choices:
        raise BadValue(f"is not one of {', '.join(setting.choices)}")
    if setting.bounds is not None and not setting.bounds.allows(value):
        raise BadValue(f"must be {setting.bounds.describe()}")
    if setting.check is not None:
        setting.check(value)
    return value


def _shown(setting: Setting, raw: Any) -> str:
    if isinstance(raw, float):
        return f"{raw:g}"
    return repr(raw) if setting.type is str else str(raw)


def _toml(raw: Any) -> str:
    """A value as it is written in the config file."""
    if isinstance(raw, bool):
        return str(raw).lower()
    return repr(raw) if isinstance(raw, str) else str(raw)


def _sentence(subject: str, shown: str, problem: str) -> str:
    """ "--jobs must be at least 1, not 0", or "--auth 'magic' is not one of …"."""
    if problem.startswith("must "):
        return f"{subject} {problem}, not {shown}"
    return f"{subject} {shown} {problem}"


def flag_error(setting: Setting, flag: str, raw: Any, bad: BadValue) -> InputError:
    """A bad value typed on the command line is a usage error (exit 2) naming the flag."""
    example = f"e.g. {flag} {setting.example}" if setting.example else ""
    return InputError(_sentence(flag, _shown(setting, raw), bad.problem), bad.fix or example)


def set_error(setting: Setting, raw: Any, bad: BadValue) -> InputError:
    """`config set KEY VALUE` with a bad value: a usage error naming the key and value,
    written as the file would hold it (``timeout = 0``, ``timeout = 'soon'``)."""
    try:
        stored = _toml(_typed(setting, raw))
    except BadValue:
        stored = _toml(raw)
    example = f"e.g. `volccli config set {setting.name} {setting.example}`"
    hint = bad.fix or (example if setting.example else "")
    return InputError(f"{setting.name} = {stored}: {setting.name} {bad.problem}", hint)


def env_error(setting: Setting, raw: str, bad: BadValue) -> ConfigError:
    """A bad value in a VOLCCLI_* variable: a configuration error naming the variable."""
    if bad.fix:
        hint = f"{bad.fix}; or unset {setting.env}"
    elif setting.example:
        hint = f"set {setting.env} to e.g. {setting.example}, or unset it"
    else:
        hint = f"fix {setting.env} or unset it"
    return ConfigError(f"{setting.env}={raw}: {setting.name} {bad.problem}", hint)


def file_error(setting: Setting, raw: Any, bad: BadValue, path: Path, profile: str) -> ConfigError:
    """A bad value in config.toml: a configuration error naming the file and profile."""
    option = "" if profile == DEFAULT_PROFILE else f" --profile {profile}"
    unset = f"`volccli config unset{option} {setting.name}`"
    if bad.fix:
        hint = f"{bad.fix}; or run {unset}"
    else:
        value = setting.example or "VALUE"
        hint = f"run `volccli config set{option} {setting.name} {value}` or {unset}"
    return ConfigError(
        f"{setting.name} = {_toml(raw)} in {path} [profiles.{profile}]: "
        f"{setting.name} {bad.problem}",
        hint,
    )


def coerce(setting: Setting, raw: Any) -> Any:
    """``raw`` as a valid value of the setting; InputError (as for `config set`) if not."""
    try:
        return check(setting, raw)
    except BadValue as bad:
        raise set_error(setting, raw, bad) from None


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


# --- the Volcengine tools' own conventions --------------------------------------------


@dataclass
class CredentialSet:
    access_key: str
    secret_key: str
    session_token: str
    source: str
    region: str = ""


def volcengine_credentials(
    env: Mapping[str, str], home: Path, notes: list[str]
) -> CredentialSet | None:
    """The first complete key pair among the conventions of the Volcengine SDKs and CLI."""
    for ak_var, sk_var, token_var in (
        ("VOLC_ACCESSKEY", "VOLC_SECRETKEY", ""),
        ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "VOLCENGINE_SESSION_TOKEN"),
    ):
        if env.get(ak_var) or env.get(sk_var):
            if not (env.get(ak_var) and env.get(sk_var)):
                notes.append(f"{ak_var} and {sk_var} must both be set; ignoring them")
                continue
            return CredentialSet(
                env[ak_var],
                env[sk_var],
                env.get(token_var, "") if token_var else "",
                f"env {ak_var}/{sk_var}",
                env.get("VOLCENGINE_REGION", ""),
            )
    for reader in (_volc_credentials_file, _volc_config_file, _volcengine_config_json):
        found = reader(env, home, notes)
        if found:
            return found
    return None


def _volc_credentials_file(
    env: Mapping[str, str], home: Path, notes: list[str]
) -> CredentialSet | None:
    path = home / ".volc" / "credentials"
    if not path.exists():
        return None
    import configparser  # here: only for this file, which few people have

    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
        section = parser["default"]
        return CredentialSet(
            section["access_key_id"],
            section["secret_access_key"],
            section.get("session_token", ""),
            f"file {path}",
        )
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"cannot read {path} ({exc}); fix its permissions")
    except (configparser.Error, KeyError) as exc:
        notes.append(f"{path} has no [default] access_key_id/secret_access_key ({exc})")
    return None


def _volc_config_file(env: Mapping[str, str], home: Path, notes: list[str]) -> CredentialSet | None:
    path = home / ".volc" / "config"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CredentialSet(data["ak"], data["sk"], data.get("session_token", ""), f"file {path}")
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"cannot read {path} ({exc}); fix its permissions")
    except (ValueError, KeyError, TypeError):
        notes.append(f'{path} is not JSON with "ak" and "sk"')
    return None


def _volcengine_config_json(
    env: Mapping[str, str], home: Path, notes: list[str]
) -> CredentialSet | None:
    path = home / ".volcengine" / "config.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = env.get("VOLCENGINE_PROFILE") or data.get("current", "")
        profile = data["profiles"][name]
        if not (profile.get("access-key") and profile.get("secret-key")):
            notes.append(f"{path} profile {name!r} has no access-key/secret-key")
            return None
        return CredentialSet(
            profile["access-key"],
            profile["secret-key"],
            profile.get("session-token", ""),
            f"file {path} (profile {name!r})",
            profile.get("region", ""),
        )
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"cannot read {path} ({exc}); fix its permissions")
    except (ValueError, KeyError, TypeError):
        notes.append(f"{path} has no usable current profile")
    return None


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
        return str(value)


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
    tiers: list[tuple[Callable[[str], Any], str]] = [
        (lambda key: env.get(SETTINGS[key].env), "env VOLCCLI_ACCESS_KEY/VOLCCLI_SECRET_KEY"),
        (lambda key: section.get(key), f"profile {profile!r} ({path})"),
    ]
    for lookup, source in tiers:
        ak, sk = lookup("access_key"), lookup("secret_key")
        if ak or sk:
            if not (ak and sk):
                missing = "secret_key" if ak else "access_key"
                problem = f"{source} gives one half of a key pair: {missing} is missing"
                fix = f"set it in the same place, e.g. `volccli config set {missing}`"
                if strict:
                    raise ConfigError(problem, fix)
                resolved.notes.append(f"{problem}; {fix}")
                continue
            resolved.values["access_key"] = Value(str(ak), source)
            resolved.values["secret_key"] = Value(str(sk), source)
            token = lookup("session_token")
            if token:
                resolved.values["session_token"] = Value(str(token), source)
            return
    found = volcengine_credentials(env, home, resolved.notes)
    if found:
        resolved.values["access_key"] = Value(found.access_key, found.source)
        resolved.values["secret_key"] = Value(found.secret_key, found.source)
        if found.session_token:
            resolved.values["session_token"] = Value(found.session_token, found.source)
        if found.region and resolved.source("region") == "default":
            resolved.values["region"] = Value(found.region, found.source)


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
