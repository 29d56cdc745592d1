"""`volccli doctor`: is everything in place for a call, and if not, what exactly to fix.

Each check is one line: which settings and credentials won and why, the config file's
permissions, whether the endpoint answers, how far this machine's clock is from the
server's, and whether the server accepts the credentials. The last is proven with the
cheapest signed request there is: a get-result call for a task that does not exist.
The answer ``not_found`` can only come after the signature (or the gateway key) was
accepted, while SignatureDoesNotMatch, InvalidAccessKey or a relay's 401 say it was not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .auth import SIGNATURE_VALIDITY_SECONDS, mask, utcnow
from .config import Resolved, file_mode_problems
from .connection import Connection, check_base_url, choose_mode, connect
from .errors import (
    ApiRefusedError,
    ConfigError,
    ExitCode,
    NetworkError,
    RateLimitError,
    VolccliError,
)
from .kinds import KINDS, TXT2IMG

if TYPE_CHECKING:
    from .client import ApiClient

Status = Literal["ok", "warn", "fail"]

# A task id no task will ever have: the service answers not_found once auth has passed.
DUMMY_TASK_ID = "1000000000000000000"
WARN_SKEW = 60.0  # seconds; beyond this, say so
FAIL_SKEW = float(SIGNATURE_VALIDITY_SECONDS)  # beyond this, signatures are refused
DATE_RESOLUTION = 2.0  # the Date header counts whole seconds
REACH_CONNECT_TIMEOUT = 5.0
REACH_READ_TIMEOUT = 10.0
CALL_TIMEOUT = 20.0
LIST_SOURCES = "`volccli config show` lists every source"
CLOCK_FIX = "set the system clock right (e.g. enable NTP with `timedatectl set-ntp true`)"
LABELS: dict[Status, str] = {"ok": "ok", "warn": "warn", "fail": "FAIL"}
EXIT_PRIORITY = (int(ExitCode.USAGE), int(ExitCode.CONFIG), int(ExitCode.NETWORK))


@dataclass
class Check:
    name: str
    status: Status
    message: str
    fix: str = ""
    exit_code: int = 0  # for a failure: what volccli doctor exits with
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Hints written for the other commands send the user here: not from here.
        self.fix = self.fix.replace(" (volccli doctor)", "")

    def line(self) -> str:
        text = f"{self.name}: {self.message}"
        if self.fix and self.status != "ok":
            text += f"; fix: {self.fix}"
        return f"{LABELS[self.status]:<4}  " + " ".join(text.split())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        if self.exit_code:
            out["exit_code"] = self.exit_code
        out.update(self.data)
        return out


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    mode: str = ""
    profile: str = ""

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def exit_code(self) -> int:
        """Configuration comes before the network: a usage error (2) wins over one of
        credentials or configuration (3), which wins over an unreachable endpoint (7);
        otherwise the first failure's code."""
        codes = [c.exit_code for c in self.checks if c.status == "fail"]
        for code in EXIT_PRIORITY:
            if code in codes:
                return code
        return codes[0] if codes else 0

    @property
    def problems(self) -> int:
        return sum(c.status == "fail" for c in self.checks)

    @property
    def warnings(self) -> int:
        return sum(c.status == "warn" for c in self.checks)

    def summary(self) -> str:
        """The last line: "ready", or how many problems and warnings, and the exit code."""
        warned = _count(self.warnings, "warning")
        if self.exit_code:
            parts = [_count(self.problems, "problem")] + ([warned] if self.warnings else [])
            return f"volccli doctor: {', '.join(parts)}; exit {self.exit_code}"
        if self.warnings:
            return f"volccli doctor: ready, with {warned}"
        return "volccli doctor: ready"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "problems": self.problems,
            "warnings": self.warnings,
            "mode": self.mode,
            "profile": self.profile,
            "checks": [c.to_json() for c in self.checks],
        }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def fail(name: str, error: VolccliError, fix: str = "", exit_code: int | None = None) -> Check:
    code = int(error.exit_code) if exit_code is None else exit_code
    return Check(name, "fail", error.message, fix or error.hint, code)


# --- without a network ----------------------------------------------------------------


def unresolved(error: VolccliError, path: Path) -> Report:
    """The settings could not be resolved at all: a bad flag value (a usage error, 2)."""
    report = Report()
    report.add(fail("config", error, exit_code=int(error.exit_code)))
    for problem in file_mode_problems(path):
        report.add(_permission_check(problem))
    return report


def _permission_check(problem: str) -> Check:
    message, _, fix = problem.partition("; ")
    return Check("permissions", "warn", message, fix or "chmod 600 the file")


def config_checks(resolved: Resolved, report: Report) -> None:
    """The config file, its permissions, each bad setting and each ignored source."""
    path = resolved.path
    where = f"profile {resolved.profile!r} (from {resolved.profile_source})"
    if resolved.sandbox:
        where += "; credentials and URLs from the built-in sandbox"
    if resolved.config_problem is not None:
        error = resolved.config_problem
        report.add(
            Check(
                "config",
                "fail",
                f"{error.message} (the checks below do without it)",
                error.hint,
                int(error.exit_code),
                {"path": str(path)},
            )
        )
    elif path.exists():
        report.add(Check("config", "ok", f"{path}, {where}", data={"path": str(path)}))
    else:
        report.add(
            Check(
                "config",
                "ok",
                f"no config file at {path} (environment and defaults), {where}",
                data={"path": str(path)},
            )
        )
    for problem in file_mode_problems(path):
        report.add(_permission_check(problem))
    # The checks below go on with each bad setting's default (Resolved.usable).
    for key, error in resolved.problems.items():
        report.add(fail(f"setting {key}", error))
    for error in resolved.pair_problems:
        report.add(fail("key pair", error))
    for note in resolved.warnings:
        report.add(Check("sources", "warn", note.message, note.fix or LIST_SOURCES))


def credential_check(resolved: Resolved, report: Report) -> Connection | None:
    """Which mode and credentials won and why, and whether a Connection can be made."""
    mode, why = choose_mode(resolved)
    report.mode = mode
    report.add(Check("auth", "ok", f"{mode}, because {why}", data={"mode": mode}))
    if mode == "official" and not resolved.sandbox:
        for unused in resolved.unused:
            note = unused.note
            report.add(Check("session token", "warn", note.message, note.fix))
    try:
        connection = connect(resolved)
    except VolccliError as error:
        report.add(fail("credentials", error))
        return None
    if mode == "official":
        text = (
            f"access key {mask(str(resolved.get('access_key')))} and its secret key "
            f"from {resolved.source('access_key')}"
        )
        if resolved.get("session_token"):
            text += " with an STS session token"
        text += (
            f"; endpoint {connection.base} (from {resolved.source('endpoint')}), "
            f"region {resolved.get('region')} (from {resolved.source('region')})"
        )
    else:
        text = (
            f"API key from {resolved.source('api_key')}; base URL {connection.base} "
            f"(from {resolved.source('base_url')})"
        )
    report.add(Check("credentials", "ok", text))
    return connection


def target_url(resolved: Resolved, connection: Connection | None) -> tuple[str, str] | None:
    """(URL, where it came from) to test for reachability, when one is known and valid."""
    if connection is not None:
        name = "endpoint" if connection.mode == "official" else "base_url"
        return connection.base, resolved.source(name)
    mode, _ = choose_mode(resolved)
    name = "endpoint" if mode == "official" else "base_url"
    value = resolved.get(name)
    if not value:
        return None
    try:
        return check_base_url(value, name, resolved.source(name)), resolved.source(name)
    except VolccliError:
        return None


def clock_check(server_date: str | None, local: datetime, mode: str) -> Check:
    """How far this machine's clock is from the server's ``Date`` header."""
    if not server_date:
        return Check(
            "clock",
            "warn",
            "the server sent no Date header, so the clock could not be compared",
            "make sure this machine's clock is right (signatures allow ~15 min)",
        )
    try:
        server = parsedate_to_datetime(server_date)
    except (TypeError, ValueError):
        server = None
    if server is None or server.tzinfo is None:
        return Check(
            "clock",
            "warn",
            f"the server's Date header {server_date!r} is not a date",
            "make sure this machine's clock is right (signatures allow ~15 min)",
        )
    skew = (local - server).total_seconds()
    direction = "ahead of" if skew > 0 else "behind"
    text = f"this machine's clock is {abs(skew):.0f} s {direction} the server's"
    if abs(skew) < DATE_RESOLUTION:
        text = f"this machine's clock matches the server's (within {DATE_RESOLUTION:.0f} s)"
    data = {"skew_seconds": round(skew, 1)}
    if abs(skew) <= WARN_SKEW:
        return Check("clock", "ok", text, data=data)
    if abs(skew) <= FAIL_SKEW or mode != "official":
        why = (
            "signed requests fail beyond ~15 min"
            if mode == "official"
            else "it only matters for official signing"
        )
        return Check("clock", "warn", f"{text} ({why})", CLOCK_FIX, data=data)
    return Check(
        "clock",
        "fail",
        f"{text}: signatures are refused beyond ~{FAIL_SKEW / 60:.0f} min",
        CLOCK_FIX,
        int(ExitCode.CONFIG),
        data,
    )


# --- over the network -----------------------------------------------------------------


@dataclass
class Reached:
    status: int
    date: str | None
    local: datetime  # this machine's time halfway through the exchange
    elapsed: float


def reach(url: str, *, connect_timeout: float, read_timeout: float) -> Reached:
    """One GET; any HTTP answer means the endpoint is reachable."""
    import requests

    from .client import environment_settings, new_session, transport_error

    session = new_session()
    started, before = time.monotonic(), utcnow()
    try:
        response = session.get(
            url + "/",
            timeout=(connect_timeout, read_timeout),
            allow_redirects=False,
            stream=True,
            **environment_settings(url),
        )
        response.close()
    except requests.exceptions.RequestException as exc:
        raise transport_error(exc, read_timeout) from None
    finally:
        session.close()
    after = utcnow()
    return Reached(
        response.status_code,
        response.headers.get("Date"),
        before + (after - before) / 2,
        time.monotonic() - started,
    )


def endpoint_check(url: str, source: str, report: Report) -> Reached | None:
    try:
        reached = reach(url, connect_timeout=REACH_CONNECT_TIMEOUT, read_timeout=REACH_READ_TIMEOUT)
    except NetworkError as error:
        report.add(
            Check(
                "endpoint",
                "fail",
                f"{url} (from {source}) is unreachable: {error.message}",
                "check the network, the URL and any proxy (HTTPS_PROXY); "
                "`volccli --sandbox doctor` checks volccli itself",
                int(ExitCode.NETWORK),
                {"url": url},
            )
        )
        return None
    report.add(
        Check(
            "endpoint",
            "ok",
            f"{url} answered (HTTP {reached.status}) in {reached.elapsed * 1000:.0f} ms",
            data={"url": url, "http_status": reached.status},
        )
    )
    return reached


def probe_client(connection: Connection) -> ApiClient:
    """A client that reports the first answer: doctor retries nothing and waits briefly."""
    from .client import ApiClient

    quick = connection._replace(retries=0, timeout=min(connection.timeout, CALL_TIMEOUT))
    return ApiClient(quick)


def dummy_result(client: ApiClient, req_key: str, task_id: str | None = None) -> str:
    """The status the service gives a get-result call for a task that does not exist."""
    from .tasks import get_result

    envelope = get_result(client, req_key, task_id or DUMMY_TASK_ID, {})
    return str(envelope.data.get("status") or "")


def accepted_check(
    client: ApiClient, resolved: Resolved, report: Report, skew: float | None
) -> bool:
    """One cheap signed (or Bearer) call; True when the credentials were accepted."""
    mode = client.connection.mode
    what = "signature" if mode == "official" else "API key"
    name = "signature" if mode == "official" else "api key"
    try:
        status = dummy_result(client, TXT2IMG.req_key)
    except VolccliError as error:
        if isinstance(error.code, int) and not isinstance(error, RateLimitError):
            # A business code comes from behind the gateway: the credentials got through.
            report.add(
                Check(
                    name,
                    "ok",
                    f"the {what} was accepted (the service answered {error.code} for "
                    f"{TXT2IMG.req_key}: {error.message})",
                )
            )
            return True
        if isinstance(error, RateLimitError):
            report.add(
                Check(
                    name,
                    "warn",
                    f"rate limited before the {what} could be confirmed ({error.message})",
                    "run `volccli doctor` again in a minute",
                )
            )
            return True
        if isinstance(error, NetworkError):
            report.add(fail(name, error, exit_code=int(ExitCode.NETWORK)))
            return False
        report.add(
            fail(name, error, _credential_fix(error, resolved, mode, skew), int(ExitCode.CONFIG))
        )
        return False
    report.add(
        Check(
            name,
            "ok",
            f"the {what} was accepted (a get-result call for a dummy task answered "
            f"{status or 'without a status'})",
        )
    )
    return True


def _credential_fix(error: VolccliError, resolved: Resolved, mode: str, skew: float | None) -> str:
    if error.code == "SignatureDoesNotMatch":
        clock = "" if skew is None else f" (it is {abs(skew):.0f} s off the server's)"
        return (
            f"check the secret key (from {resolved.source('secret_key')}) and this machine's "
            f"clock{clock}"
        )
    if error.code == "InvalidAccessKey":
        token = " and the STS session token" if resolved.get("session_token") else ""
        fix = (
            f"check the access key {mask(str(resolved.get('access_key')))}{token} "
            f"(from {resolved.source('access_key')})"
        )
        if not token and resolved.unused:
            # A token that is set but not used is not what was refused.
            fix += f"; no session token was sent ({resolved.unused[0].note.message})"
        return fix
    if error.code == "InvalidTimestamp":
        return CLOCK_FIX
    if mode == "gateway" and error.http_status == 401:
        return (
            f"check the API key (from {resolved.source('api_key')}) and the base URL "
            f"{resolved.get('base_url')} (from {resolved.source('base_url')})"
        )
    return error.hint


def probe_checks(client: ApiClient, report: Report) -> None:
    """One dummy get-result call per request kind: is each req_key enabled for the account?"""
    for kind in KINDS.values():
        name = f"probe {kind.command}"
        try:
            status = dummy_result(client, kind.req_key)
        except ApiRefusedError as error:
            if error.code == 50400:
                report.add(
                    Check(
                        name,
                        "warn",
                        f"{kind.req_key} is not enabled for this account (50400)",
                        "enable the ability in the Volcengine console, or check the req_key",
                        data={"req_key": kind.req_key, "enabled": False},
                    )
                )
            else:
                report.add(Check(name, "warn", error.message, error.hint))
            continue
        except ConfigError as error:
            report.add(fail(name, error))
            continue
        except NetworkError as error:
            report.add(fail(name, error, exit_code=int(ExitCode.NETWORK)))
            continue
        except VolccliError as error:
            report.add(Check(name, "warn", error.message, error.hint))
            continue
        report.add(
            Check(
                name,
                "ok",
                f"{kind.req_key} answers (dummy task: {status or 'no status'})",
                data={"req_key": kind.req_key, "enabled": True},
            )
        )


def diagnose(
    resolved: Resolved, *, probe: bool = False, instead_of_calls: Check | None = None
) -> Report:
    """Every check, in order. A problem is reported and the checks go on: a bad setting
    with its default, bad credentials still with the endpoint and the clock. A check is
    skipped only when what it needs is missing (no endpoint, no usable credentials).

    ``instead_of_calls`` replaces the checks from the credentials on (the built-in
    sandbox could not be started)."""
    report = Report(profile=resolved.profile)
    config_checks(resolved, report)
    if instead_of_calls is not None:
        report.add(instead_of_calls)
        return report
    usable = resolved.usable()
    connection = credential_check(usable, report)
    unsure = [name for name in ("auth", "endpoint", "base_url") if name in resolved.problems]
    if unsure:
        # The default in place of a bad URL or mode is a server nobody asked for: the
        # credentials are not sent there, and its answers would say nothing of the one meant.
        report.add(
            Check(
                "endpoint",
                "warn",
                f"not checked: the {unsure[0]} setting is not valid, and its default is not "
                "the server that was asked for",
                "fix that setting, then run `volccli doctor` again",
            )
        )
        return report
    target = target_url(usable, connection)
    if target is None:
        return report
    reached = endpoint_check(*target, report)
    if reached is None:
        return report
    clock_result = report.add(clock_check(reached.date, reached.local, report.mode))
    skew = clock_result.data.get("skew_seconds")
    if connection is None:
        return report
    client = probe_client(connection)
    try:
        if accepted_check(client, usable, report, skew) and probe:
            probe_checks(client, report)
    finally:
        client.close()
    return report
