"""The sync-to-async flow: submit a task, then poll its result with backoff.

Submit sends the same body as CVProcess minus return_url and logo_info, which the
service takes at get-result time inside ``req_json`` (a serialized JSON string).
Always check ``code`` before ``data.status``: the client raises on any non-10000 code.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import ApiClient, Envelope, Event, no_event
from .errors import ApiRefusedError, InputError, NetworkError, RateLimitError
from .kinds import CANCEL_ACTION, CANCEL_VERSION, DEFAULT_VERSION, RESULT_ACTION, SUBMIT_ACTION
from .payload import encode_body

# Fields the service wants at get-result time, not at submit.
RESULT_FIELDS = ("return_url", "logo_info", "aigc_meta")
PENDING = ("in_queue", "generating")


@dataclass(frozen=True)
class PollPolicy:
    interval: float = 3.0  # first wait between polls
    factor: float = 1.5
    max_interval: float = 15.0
    timeout: float = 900.0  # give up waiting after this long

    def __post_init__(self) -> None:
        # Checked where the options are read, before a task is submitted (and billed).
        finite = math.isfinite(self.interval) and math.isfinite(self.timeout)
        if not (finite and self.interval > 0 and self.timeout > 0):
            raise InputError(
                "--poll-interval and --wait-timeout must be numbers above 0",
                "e.g. --poll-interval 3 --wait-timeout 900",
            )


WAIT_TIMEOUT = "wait_timeout"  # the code of a task still running at --wait-timeout


class Left(Exception):
    """A batch is stopping: stop polling; the task id is journalled for the next run."""


def split_body(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(submit body, req_json object) for an async run of ``body``."""
    submit = {k: v for k, v in body.items() if k not in RESULT_FIELDS}
    req_json = {k: body[k] for k in RESULT_FIELDS if k in body}
    return submit, req_json


def submit(client: ApiClient, body: dict[str, Any], *, on_event: Event = no_event) -> str:
    envelope = client.call(SUBMIT_ACTION, DEFAULT_VERSION, encode_body(body), on_event=on_event)
    task_id = envelope.data.get("task_id")
    if not task_id:
        raise NetworkError(
            "the submit answer has no task_id",
            "retry later; contact support with the request id",
            request_id=envelope.request_id,
        )
    return str(task_id)


def get_result(
    client: ApiClient,
    req_key: str,
    task_id: str,
    req_json: dict[str, Any],
    *,
    on_event: Event = no_event,
) -> Envelope:
    body: dict[str, Any] = {"req_key": req_key, "task_id": task_id}
    if req_json:
        body["req_json"] = json.dumps(req_json, ensure_ascii=False, separators=(",", ":"))
    return client.call(
        RESULT_ACTION, DEFAULT_VERSION, encode_body(body), on_event=on_event, unbilled=True
    )


def cancel(
    client: ApiClient, req_key: str, task_id: str, *, on_event: Event = no_event
) -> Envelope:
    """Cancel a task with CVCancelTask; the service cancels only a task still queued."""
    body = {"req_key": req_key, "task_id": task_id}
    envelope = client.call(
        CANCEL_ACTION, CANCEL_VERSION, encode_body(body), on_event=on_event, unbilled=True
    )
    status = str(envelope.data.get("status") or "")
    if status == "not_found" and envelope.resent:
        # An earlier attempt whose answer was lost cancelled it: the service forgets a
        # cancelled task, so the resend finds nothing. Not a wrong id.
        envelope.body["data"] = {**envelope.data, "status": "cancelled"}
        return envelope
    if status in ("not_found", "expired"):
        _gone(status, req_key, task_id, envelope)
    return envelope


def _gone(status: str, req_key: str, task_id: str, envelope: Envelope) -> None:
    """Raise for a task the service no longer knows."""
    if status == "not_found":
        raise ApiRefusedError(
            f"task {task_id} was not found for {req_key}",
            "check the req_key and task id; tasks are kept for 12-24 hours",
            code="not_found",
            request_id=envelope.request_id,
        )
    raise ApiRefusedError(
        f"task {task_id} has expired",
        "submit the job again",
        code="expired",
        request_id=envelope.request_id,
    )


def wait(
    client: ApiClient,
    req_key: str,
    task_id: str,
    req_json: dict[str, Any],
    *,
    policy: PollPolicy = PollPolicy(),
    on_event: Event = no_event,
    sleep: Callable[[float], None] = time.sleep,
    once: bool = False,
) -> Envelope:
    """Poll until the task is done; ``once`` returns the first answer, pending or not."""
    started = time.monotonic()
    interval = policy.interval
    while True:
        try:
            envelope = get_result(client, req_key, task_id, req_json, on_event=on_event)
        except (NetworkError, RateLimitError) as error:
            # The task was submitted, and paid for: say how to collect it, not to pay again.
            error.hint = (
                f"the task may still finish; fetch it with `volccli task wait {req_key} {task_id}`"
            )
            raise
        status = str(envelope.data.get("status") or "")
        on_event("status", {"status": status, "task_id": task_id})
        if status == "done":
            return envelope
        if status in ("not_found", "expired"):
            _gone(status, req_key, task_id, envelope)
        if once:
            return envelope
        if status not in PENDING:
            raise NetworkError(
                f"task {task_id} has an unknown status {status!r}",
                "retry `volccli task wait` later",
                request_id=envelope.request_id,
            )
        waited = time.monotonic() - started
        if waited >= policy.timeout:
            raise NetworkError(
                f"task {task_id} is still {status} after {waited:.0f}s "
                f"(--wait-timeout {policy.timeout:g}s)",
                f"wait longer with `volccli task wait {req_key} {task_id}`",
                code=WAIT_TIMEOUT,
            )
        # The last wait is cut short so that the last poll comes at --wait-timeout.
        sleep(min(interval, policy.timeout - waited))
        interval = min(policy.max_interval, interval * policy.factor)
