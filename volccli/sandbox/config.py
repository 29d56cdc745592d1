"""The sandbox's settings: where it listens, what it accepts and which faults it injects.

Every fault knob can be set four ways with the same name: a ``SandboxConfig`` field, a
``volccli sandbox serve`` option, an environment variable ``VOLCCLI_SANDBOX_<KNOB>`` and a
key of ``POST /__sandbox/config``. ``apply_changes`` is the one place that checks and
converts a value, so all four agree on what is accepted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

API_KEY: Final = "sandbox-api-key"
ACCESS_KEY: Final = "AKLTsandboxAccessKey"
SECRET_KEY: Final = "sandbox-secret-key"
SESSION_TOKEN: Final = "sandbox-sts-token"

ENV_PREFIX: Final = "VOLCCLI_SANDBOX_"
# Shown as "***" in stats and config answers, like any credential.
SECRET_KNOBS: Final = frozenset({"api_key", "secret_key", "session_token"})


@dataclass
class SandboxConfig:
    """Listening address, accepted credentials and fault knobs (all live-changeable but
    host, port and allow_remote)."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port, read it back from Sandbox.base_url
    allow_remote: bool = False  # listening on a non-loopback address needs this
    api_key: str = API_KEY
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    session_token: str = SESSION_TOKEN
    max_skew: float = 900.0  # seconds X-Date may differ from the sandbox clock
    latency: float | str = 0.0  # seconds added to each API request: "0.3" or "0.1-0.5"
    qps: float = 0.0  # token bucket over API actions (burst = qps); 0 = unlimited
    concurrency: int = 0  # API requests in flight before 50430; 0 = unlimited
    relay_429: bool = False  # gateway style: limits answer a relay's plain 429
    error_rate: float = 0.0  # fraction answered 50500
    drop_rate: float = 0.0  # fraction whose connection is closed without an answer
    truncate_rate: float = 0.0  # fraction whose body is cut in half
    fault_seed: int = 0  # seeds the dice of the three rates above
    trickle_rate: float = 200.0  # bytes per second of the `trickle` marker
    url_ttl: float = 3600.0  # seconds a return_url link stays valid
    task_ttl: float = 86400.0  # seconds an async task can be fetched
    async_polls: int = 2  # get-result polls answered before "done"
    result_padding: int = 0  # bytes of private PNG chunk added to every result
    max_body: int = 0  # request bodies above this many bytes get 413; 0 = no limit
    recent_limit: int = 50  # requests kept in stats["recent"]
    extra_req_keys: tuple[str, ...] = ()  # more req_keys accepted with generic checks
    lenient_ranges: bool = False  # skip the ranges kinds.py marks confirmed=False
    log_requests: bool = False  # one line per request on stderr

    def __post_init__(self) -> None:
        # Normalise through the same checks as run-time changes.
        checked = check_changes({name: getattr(self, name) for name in KNOBS})
        for name, value in checked.items():
            setattr(self, name, value)
        self.port = int(self.port)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be between 0 and 65535, not {self.port}")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> SandboxConfig:
        """A config from ``VOLCCLI_SANDBOX_<KNOB>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in (*KNOBS, "host", "port", "allow_remote"):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update(overrides)
        port = values.pop("port", 0)
        host = str(values.pop("host", "127.0.0.1"))
        allow_remote = _to_bool(values.pop("allow_remote", False))
        config = cls(host=host, port=int(str(port)), allow_remote=allow_remote)
        apply_changes(config, values)
        return config

    def knobs(self, *, reveal: bool = False) -> dict[str, object]:
        """The run-time settings as JSON-ready values; secrets masked unless ``reveal``."""
        out: dict[str, object] = {}
        for name in KNOBS:
            value = getattr(self, name)
            if name in SECRET_KNOBS and not reveal:
                value = "***" if value else ""
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


def parse_latency(value: object) -> tuple[float, float]:
    """``0.3`` or ``"0.3"`` -> (0.3, 0.3); ``"0.1-0.5"`` -> (0.1, 0.5)."""
    if isinstance(value, bool):
        raise ValueError("latency must be seconds or a range like 0.1-0.5")
    if isinstance(value, (int, float)):
        lo = hi = float(value)
    else:
        text = str(value).strip()
        low, sep, high = text.partition("-")
        try:
            lo = float(low) if text else 0.0
            hi = float(high) if sep else lo
        except ValueError:
            raise ValueError(
                f"latency must be seconds or a range like 0.1-0.5, not {text!r}"
            ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi < lo:
        raise ValueError(f"latency range must satisfy 0 <= low <= high, not {value!r}")
    return lo, hi


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _number(
    kind: type, lo: float | None = None, hi: float | None = None
) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("expected a number, not a boolean")
        try:
            number = kind(value) if kind is float else int(str(value).strip())
        except (TypeError, ValueError):
            raise ValueError(f"expected {'a number' if kind is float else 'an integer'}, "
                             f"not {value!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError("expected a finite number")
        if lo is not None and number < lo:
            raise ValueError(f"must be >= {lo:g}")
        if hi is not None and number > hi:
            raise ValueError(f"must be <= {hi:g}")
        return number

    return convert


def _latency(value: object) -> object:
    parse_latency(value)
    return value if isinstance(value, str) else float(value)  # type: ignore[arg-type]


def _keys(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        parts = [str(item).strip() for item in value]
    else:
        raise ValueError("expected a list of req_keys")
    return tuple(part for part in parts if part)


def _text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


# Run-time knobs and their converters; host, port and allow_remote are fixed at start.
KNOBS: Final[dict[str, Callable[[object], object]]] = {
    "api_key": _text,
    "access_key": _text,
    "secret_key": _text,
    "session_token": _text,
    "max_skew": _number(float, 0),
    "latency": _latency,
    "qps": _number(float, 0),
    "concurrency": _number(int, 0),
    "relay_429": _to_bool,
    "error_rate": _number(float, 0, 1),
    "drop_rate": _number(float, 0, 1),
    "truncate_rate": _number(float, 0, 1),
    "fault_seed": _number(int),
    "trickle_rate": _number(float, 1),
    "url_ttl": _number(float, 0),
    "task_ttl": _number(float, 0),
    "async_polls": _number(int, 0),
    "result_padding": _number(int, 0, 512 * 1024 * 1024),
    "max_body": _number(int, 0),
    "recent_limit": _number(int, 0, 100_000),
    "extra_req_keys": _keys,
    "lenient_ranges": _to_bool,
    "log_requests": _to_bool,
}


# Help and help panel of each `volccli sandbox serve` option; the option's name, type,
# default and environment variable come from SandboxConfig, so they cannot drift apart.
_FAULTS, _LIMITS, _RESULTS, _CREDENTIALS = (
    "Faults", "Limits", "Results and tasks", "Accepted credentials"
)
OPTION_HELP: Final[dict[str, tuple[str, str]]] = {
    "host": ("Address to listen on; non-loopback needs --allow-remote.", ""),
    "port": ("Port to listen on (0 picks a free one).", ""),
    "allow_remote": ("Allow listening on an address other machines can reach.", ""),
    "latency": ("Seconds added to each API request: fixed (0.3) or a range (0.1-0.5).", _FAULTS),
    "qps": ("Requests per second before 50429 (token bucket, burst = qps); 0 = no limit.",
            _LIMITS),
    "concurrency": ("API requests in flight before 50430; 0 = no limit.", _LIMITS),
    "relay_429": ("Gateway style: answer limits with a relay's plain HTTP 429 JSON.", _LIMITS),
    "error_rate": ("Fraction of API requests answered 50500 Internal Error (not billed).",
                   _FAULTS),
    "drop_rate": ("Fraction whose connection is closed without an answer (billed).", _FAULTS),
    "truncate_rate": ("Fraction whose answer is cut off after half the body (billed).", _FAULTS),
    "fault_seed": ("Seed of the random faults, so a run can be repeated.", _FAULTS),
    "trickle_rate": ("Bytes per second of answers to the `trickle` marker.", _FAULTS),
    "max_skew": ("Seconds X-Date may differ from this clock before InvalidTimestamp.", _LIMITS),
    "max_body": ("Request bodies larger than this many bytes get HTTP 413; 0 = no limit.",
                 _LIMITS),
    "url_ttl": ("Seconds a return_url link stays valid.", _RESULTS),
    "task_ttl": ("Seconds an async task can be fetched before it is 'expired'.", _RESULTS),
    "async_polls": ("Get-result polls answered in_queue/generating before 'done'.", _RESULTS),
    "result_padding": ("Bytes of private PNG chunk added to each result (big results, cheaply).",
                       _RESULTS),
    "recent_limit": ("Requests kept in the 'recent' list of /__sandbox/stats.", _RESULTS),
    "extra_req_keys": ("Accept another req_key with generic checks (repeatable).", _RESULTS),
    "lenient_ranges": ("Do not enforce ranges the request-kind table marks unconfirmed "
                       "(e.g. txt2img sizes above 768).", _LIMITS),
    "log_requests": ("Print one line per API request on stderr.", ""),
    "api_key": ("Bearer key accepted on /volcv/v1.", _CREDENTIALS),
    "access_key": ("Access key accepted in V4 signatures.", _CREDENTIALS),
    "secret_key": ("Secret key V4 signatures are checked with.", _CREDENTIALS),
    "session_token": ("STS token accepted in X-Security-Token.", _CREDENTIALS),
}


def check_changes(changes: Mapping[str, object]) -> dict[str, object]:
    """Convert every change or raise ValueError naming the first bad knob."""
    out: dict[str, object] = {}
    for name, value in changes.items():
        convert = KNOBS.get(name)
        if convert is None:
            fixed = " (fixed once the sandbox has started)" if name in ("host", "port") else ""
            raise ValueError(f"unknown sandbox setting {name!r}{fixed}")
        try:
            out[name] = convert(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return out


def apply_changes(config: SandboxConfig, changes: Mapping[str, object]) -> dict[str, object]:
    """Check all changes first, then apply them, so a bad value changes nothing."""
    checked = check_changes(changes)
    for name, value in checked.items():
        setattr(config, name, value)
    return checked


def copy_config(config: SandboxConfig) -> SandboxConfig:
    return dataclasses.replace(config)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": the addresses only this machine reaches."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
