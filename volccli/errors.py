"""The error tree. Each error carries its exit code and a hint that names the fix.

The exit codes are a public interface (README, "Exit codes"); never renumber them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2  # usage or bad input
    CONFIG = 3  # credentials or config
    REFUSED = 4  # the API refused the request (parameters, access, 50400)
    AUDIT = 5  # content audit rejected
    RATE_LIMITED = 6  # rate limited after retries
    NETWORK = 7  # network or server failure after retries
    OUTPUT = 8  # could not write output
    BATCH_FAILED = 9  # batch finished with some jobs failed
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM (a CI job cancelled, `timeout`, `docker stop`)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: stops volccli the way Ctrl-C does."""


def interrupt_exit(exc: KeyboardInterrupt) -> tuple[str, ExitCode]:
    """The last line and the exit code of a Ctrl-C or a SIGTERM."""
    if isinstance(exc, Terminated):
        return "volccli: terminated", ExitCode.TERMINATED
    return "volccli: interrupted", ExitCode.INTERRUPTED


class VolccliError(Exception):
    """A failure the user can act on: one line of message, one line of hint."""

    exit_code: ExitCode = ExitCode.UNEXPECTED
    # Stable machine-readable name used in JSON output and history rows.
    kind: str = "error"

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        code: int | str | None = None,
        request_id: str = "",
        http_status: int | None = None,
        retry: str = "never",
    ) -> None:
        super().__init__(message)
        # The retry rule of codes.Retry: never, safe, server or filtered.
        self.retry = retry
        self.message = message
        self.hint = hint
        self.code = code
        self.request_id = request_id
        self.http_status = http_status

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": self.kind,
            "message": self.message,
            "exit_code": int(self.exit_code),
        }
        if self.hint:
            out["hint"] = self.hint
        if self.code is not None:
            out["code"] = self.code
        if self.request_id:
            out["request_id"] = self.request_id
        if self.http_status is not None:
            out["http_status"] = self.http_status
        return out


class InputError(VolccliError):
    """Bad flags, files, images or templates: nothing was sent."""

    exit_code = ExitCode.USAGE
    kind = "input"


class ConfigError(VolccliError):
    """Missing or rejected credentials, malformed config, unknown profile."""

    exit_code = ExitCode.CONFIG
    kind = "config"


class ApiRefusedError(VolccliError):
    """The API answered and refused: parameters, access, unknown req_key."""

    exit_code = ExitCode.REFUSED
    kind = "refused"


class AuditError(VolccliError):
    """The content audit rejected the input or the output."""

    exit_code = ExitCode.AUDIT
    kind = "audit"


class RateLimitError(VolccliError):
    """QPS or concurrency limit still hit after the retry budget."""

    exit_code = ExitCode.RATE_LIMITED
    kind = "rate_limited"

    def __init__(self, *args: object, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # same signature as the base
        self.retry_after = retry_after


class NetworkError(VolccliError):
    """Transport or server failure: connection, timeout, 5xx, unreadable answer."""

    exit_code = ExitCode.NETWORK
    kind = "network"

    def __init__(self, *args: object, maybe_billed: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # same signature as the base
        # True when the server may have processed (and billed) the request.
        self.maybe_billed = maybe_billed


class OutputError(VolccliError):
    """The result could not be written where it was asked to go."""

    exit_code = ExitCode.OUTPUT
    kind = "output"
