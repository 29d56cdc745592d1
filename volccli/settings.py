"""The settings table and value checking: every setting's name, type, default and valid
values, and the message for a bad value from each place a value can come from (a flag,
`config set`, a VOLCCLI_* variable, config.toml).
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NamedTuple

from .auth import DEFAULT_REGION
from .errors import ConfigError, InputError

# The profile used when none is named. Here rather than in config.py because file_error
# leaves `--profile` out of the commands it suggests for this one.
DEFAULT_PROFILE: Final = "default"
DEFAULT_ENDPOINT: Final = "https://visual.volcengineapi.com"


class Bounds(NamedTuple):
    """The numbers a setting allows: at least ``low``, or above it when ``strict``; at
    most ``high``."""

    low: float
    strict: bool = False
    note: str = ""
    high: float = math.inf

    def allows(self, value: float) -> bool:
        above = value > self.low if self.strict else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        text = f"{'above' if self.strict else 'at least'} {self.low:g}"
        if self.high != math.inf:
            text = f"{text} and at most {self.high:g}"
        return f"{text} ({self.note})" if self.note else text

    def broken_by(self, value: float) -> str:
        """The one bound ``value`` breaks, as ``describe`` words it."""
        if value > self.high:
            return f"at most {self.high:g}"
        return self._replace(high=math.inf).describe()


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


# The slowest rate a batch may ask for: the limiter spaces requests 1/qps seconds apart,
# and a tiny rate (1e-300) would be a wait longer than the platform's clock can count.
MIN_QPS: Final = 0.001
MAX_JOBS: Final = 256


def _check_qps(value: float) -> None:
    if 0 < value < MIN_QPS:
        raise BadValue(
            f"must be 0 (no limit) or at least {MIN_QPS:g} (one request per {1 / MIN_QPS:g} s)"
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
    # A key or name that goes into a request's headers or signature: whitespace around it
    # (a pasted line break, a CRLF file) is dropped wherever it is read, and connect()
    # refuses one with characters a header cannot carry.
    token: bool = False

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
        Setting("api_key", str, "Gateway API key.", secret=True, token=True),
        Setting("endpoint", str, "Official endpoint.", DEFAULT_ENDPOINT),
        Setting("region", str, "Signing region.", DEFAULT_REGION, token=True),
        Setting("access_key", str, "Volcengine access key id (AK).", token=True),
        Setting("secret_key", str, "Volcengine secret access key (SK).", secret=True, token=True),
        Setting(
            "session_token",
            str,
            "STS session token for temporary keys.",
            secret=True,
            token=True,
        ),
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
            check=_check_qps,
        ),
        # Each job in flight holds a thread and a pooled connection: far past what any
        # account's concurrency allows, more only costs memory.
        Setting(
            "jobs",
            int,
            "Requests in flight at once in a batch.",
            4,
            bounds=Bounds(1, high=MAX_JOBS),
        ),
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
        text = str(raw)
        return text.strip() if setting.token else text
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
        raise BadValue(f"must be {setting.bounds.broken_by(value)}")
    if setting.check is not None:
        setting.check(value)
    return value


def unsendable(value: str) -> str:
    """What in ``value`` an HTTP header cannot carry ("a line break"), or "" when nothing.

    Keys, tokens and region names are printable ASCII; a line break, a control character
    or a non-ASCII character can only be a pasting accident, and would otherwise fail
    mid-request (requests refuses a line break, http.client a non-Latin-1 character).
    """
    if "\n" in value or "\r" in value:
        return "a line break"
    for char in value:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "a control character"
        if ord(char) > 0x7E:
            return "a non-ASCII character"
    return ""


def _shown(setting: Setting, raw: Any) -> str:
    if setting.secret:
        return "****"  # an error message never carries a secret, however wrong it is
    if isinstance(raw, float):
        return f"{raw:g}"
    return repr(raw) if setting.type is str else str(raw)


def _toml(raw: Any, setting: Setting | None = None) -> str:
    """A value as it is written in the config file (a secret masked)."""
    if setting is not None and setting.secret:
        return "****"
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
        stored = _toml(_typed(setting, raw), setting)
    except BadValue:
        stored = _toml(raw, setting)
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
    shown = "****" if setting.secret else raw
    return ConfigError(f"{setting.env}={shown}: {setting.name} {bad.problem}", hint)


def file_error(setting: Setting, raw: Any, bad: BadValue, path: Path, profile: str) -> ConfigError:
    """A bad value in config.toml: a configuration error naming the file and profile."""
    option = "" if profile == DEFAULT_PROFILE else f" --profile {profile}"
    unset = f"`volccli config unset{option} {setting.name}`"
    if bad.fix:
        hint = f"{bad.fix}; or run {unset}"
    else:
        # A secret is prompted for: it never goes on the command line.
        value = "" if setting.secret else f" {setting.example or 'VALUE'}"
        hint = f"run `volccli config set{option} {setting.name}{value}` or {unset}"
    return ConfigError(
        f"{setting.name} = {_toml(raw, setting)} in {path} [profiles.{profile}]: "
        f"{setting.name} {bad.problem}",
        hint,
    )


def coerce(setting: Setting, raw: Any) -> Any:
    """``raw`` as a valid value of the setting; InputError (as for `config set`) if not."""
    try:
        return check(setting, raw)
    except BadValue as bad:
        raise set_error(setting, raw, bad) from None
