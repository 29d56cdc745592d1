"""The emulated API: one request in, one reply (and its bookkeeping) out.

Order of checks, as a client sees them: credentials, Action/Version, the concurrency
and QPS limits, latency, random server errors, marker words, body parsing and
validation, then the work. Only the HTTP handling lives in ``server.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from .. import kinds
from ..codes import BUSINESS
from . import synth
from .config import SandboxConfig, is_loopback_host, parse_latency
from .faults import (
    CONCURRENCY_LIMIT,
    HTTP_MARKERS,
    INTERNAL_ERROR,
    INVALID_INPUT,
    QPS_LIMIT,
    RESULT_MARKERS,
    TRANSPORT_MARKERS,
    Dice,
    InFlight,
    Marker,
    MarkerBook,
    TokenBucket,
    find_markers,
    http_status,
    retry_after_header,
    sleep_for,
)
from .jsonbody import NotJson, loads
from .responses import (
    SUCCESS,
    GatewayError,
    Reply,
    envelope,
    gateway_reply,
    json_reply,
    nginx_reply,
    relay_invalid_token,
    relay_reply,
    request_id,
    storage_error,
)
from .state import ResultStore, Stats, Task, TaskStore
from .validate import (
    Job,
    RequestError,
    check_req_key,
    fetch_loopback,
    invalid,
    logo_of,
    validate,
)
from .verify import bearer_ok, check_v4

# Post-generation audit rejections, which a client may answer with a new seed.
POST_AUDIT_CODES: Final = frozenset(
    code for code, info in BUSINESS.items() if info.retry == "filtered"
)

# Action -> the one Version it answers to.
ACTIONS: Final[dict[str, str]] = {
    kinds.DEFAULT_ACTION: kinds.DEFAULT_VERSION,
    kinds.SUBMIT_ACTION: kinds.DEFAULT_VERSION,
    kinds.RESULT_ACTION: kinds.DEFAULT_VERSION,
    kinds.CANCEL_ACTION: kinds.CANCEL_VERSION,
}
BILLED_ACTIONS: Final = frozenset({kinds.DEFAULT_ACTION, kinds.SUBMIT_ACTION})
CREDENTIAL_HEADERS: Final = ("Authorization", "Cookie", "X-Security-Token")
SECRET_HEADERS: Final = frozenset(name.lower() for name in CREDENTIAL_HEADERS)
RESULTS_PATH: Final = "/__sandbox/results/"
BAD_BASE64: Final = "not*base64!"
MALFORMED_BODY: Final = b'{"code":10000,"data":{"binary_data_base64":["iVBORw0KGgo'
_SHORTEN_OVER: Final = 256
NOT_JSON: Final = object()  # Call.body of a body the service's decoder would refuse
_UNREAD: Final = object()


@dataclass
class Incoming:
    """One API request as received."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    style: str  # "gateway" (/volcv/v1, Bearer) or "official" (/, V4 signature)
    host: str  # the Host the client used, for result links
    in_flight: int  # API requests being handled when this one arrived, itself included


@dataclass
class Handled:
    reply: Reply
    action: str
    outcome: str  # "ok", a business code, "auth_failed", "dropped", ...
    billed: bool = False
    req_key: str = ""
    note: str = ""  # task id or async status, shown in stats["recent"]


@dataclass
class Answer:
    """An action's result before it becomes an envelope."""

    code: int
    data: Any = None
    text: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    billable: bool = True  # False: accepted, but the work will not be charged


@dataclass(frozen=True)
class Faults:
    """The markers that fired for one request."""

    code: int | None = None
    delivery: str = ""  # drop / truncate / trickle / malformed-json
    result: str = ""  # bad-base64 / not-image / expired-url


@dataclass
class Call:
    req: Incoming
    rid: str
    started: float
    action: str
    version: str
    body_sha256: str
    body: Any = NOT_JSON  # the parsed body (read once, by jsonbody.loads), or NOT_JSON


def _call(req: Incoming, body_sha256: str, body: Any) -> Call:
    """A request as it arrives: its id, its start, and the action its query names."""
    params = dict(parse_qsl(req.query, keep_blank_values=True))
    return Call(
        req,
        request_id(),
        time.monotonic(),
        params.get("Action", ""),
        params.get("Version", ""),
        body_sha256,
        body,
    )


class Engine:
    """The sandbox's state and request handling, shared by all handler threads."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.tasks = TaskStore()
        self.results = ResultStore()
        self.markers = MarkerBook()
        self.dice = Dice(config.fault_seed)
        self.bucket = TokenBucket(lambda: self.config.qps)
        self.in_flight = InFlight()
        self._latency_rng = random.Random()

    # --- bookkeeping ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        out = self.stats.snapshot()
        out["in_flight"] = self.in_flight.current
        out["in_flight_max"] = self.in_flight.max_seen
        out["tasks"] = len(self.tasks)
        out["config"] = self.config.knobs()
        return out

    def clear(self) -> None:
        self.stats.clear()
        self.tasks.clear()
        self.results.clear()
        self.markers.clear()
        self.bucket.reset()
        self.in_flight.reset()
        self.dice.reseed(self.config.fault_seed)

    # --- API requests -----------------------------------------------------------------

    def handle(self, req: Incoming) -> Handled:
        call = _call(req, hashlib.sha256(req.body).hexdigest(), parse_body(req.body))
        try:
            handled = self._handle(call)
        except Exception:  # a sandbox bug must still answer, like the real 50500 would
            traceback.print_exc(file=sys.stderr)
            handled = Handled(
                self._envelope(call, Answer(INTERNAL_ERROR)), call.action, str(INTERNAL_ERROR)
            )
        try:
            self._record(call, handled)
        except Exception:  # a bookkeeping bug must not cost the client its answer
            traceback.print_exc(file=sys.stderr)
        return handled

    def too_large(self, req: Incoming) -> Handled:
        """A body over ``max_body``: what a relay or nginx in front would answer."""
        call = _call(req, "", NOT_JSON)  # the body was not read
        if req.style == "gateway":
            reply = relay_reply(413, "request body too large", "request_body_too_large")
        else:
            reply = nginx_reply(413)
        handled = Handled(reply, call.action, "too_large")
        self._record(call, handled)
        return handled

    def _handle(self, call: Call) -> Handled:
        config = self.config
        refused = self._authenticate(call)
        if refused is not None:
            return Handled(refused, call.action, "auth_failed")
        if not call.action or not call.version:
            error = GatewayError("MissingParameter", "Action and Version are required.")
            return Handled(self._gateway(call, error), call.action, "invalid_action")
        if ACTIONS.get(call.action) != call.version:
            error = GatewayError(
                "InvalidActionOrVersion",
                f"Could not find operation {call.action} for version {call.version}.",
            )
            return Handled(self._gateway(call, error), call.action, "invalid_action")
        limited = self._limit(call)
        if limited is not None:
            return limited
        lo, hi = parse_latency(config.latency)
        sleep_for(lo if hi <= lo else self._latency_rng.uniform(lo, hi))
        if self.dice.roll(config.error_rate):
            return self._answered(call, Answer(INTERNAL_ERROR), {}, Faults())
        markers = self._fired_markers(call)
        sleep_for(sum(marker.sleep for marker in markers))
        early = self._early_marker(call, markers)
        if early is not None:
            return early
        faults = _faults(markers)
        body = call.body
        if not isinstance(body, dict):
            return self._answered(call, Answer(INVALID_INPUT), {}, faults)
        try:
            answer = self._dispatch(call, body, faults)
        except RequestError as exc:
            answer = Answer(exc.code, None, exc.text)
        return self._answered(call, answer, body, faults)

    def _authenticate(self, call: Call) -> Reply | None:
        req = call.req
        if req.style == "gateway":
            if bearer_ok(req.headers.get("Authorization"), self.config.api_key):
                return None
            return relay_invalid_token()
        error = check_v4(
            method=req.method,
            path=req.path,
            query=req.query,
            headers=req.headers,
            body=req.body,
            config=self.config,
            now=datetime.now(timezone.utc),
        )
        return None if error is None else self._gateway(call, error)

    def _limit(self, call: Call) -> Handled | None:
        """The account's concurrency and QPS limits; neither refusal is billed."""
        config = self.config
        code, wait = None, 1.0
        if config.concurrency and call.req.in_flight > config.concurrency:
            code = CONCURRENCY_LIMIT
        else:
            wait_for = self.bucket.take()
            if wait_for is not None:
                code, wait = QPS_LIMIT, wait_for
        if code is None:
            return None
        headers = [("Retry-After", retry_after_header(wait))]
        if call.req.style == "gateway" and config.relay_429:
            reply = relay_reply(
                429,
                "rate limit exceeded, please try again later",
                "rate_limit_exceeded",
                headers=headers,
            )
            return Handled(reply, call.action, "relay_429")
        answer = Answer(code, headers=headers)
        return Handled(self._envelope(call, answer), call.action, str(code))

    def _fired_markers(self, call: Call) -> list[Marker]:
        if b"volccli-fault:" not in call.req.body:
            return []
        text = call.req.body.decode("utf-8", "replace")
        return [
            marker
            for marker in find_markers(text)
            if self.markers.fires(self._marker_key(call, marker), marker)
        ]

    @staticmethod
    def _marker_key(call: Call, marker: Marker) -> str:
        """Which requests count as "the same" for an ``xN`` marker.

        The same body, except for post-generation audit codes: a client answers those
        by resending with a new seed, so there the seed does not count.
        """
        if marker.code not in POST_AUDIT_CODES or not isinstance(call.body, dict):
            return call.body_sha256
        body = {key: value for key, value in call.body.items() if key != "seed"}
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _early_marker(self, call: Call, markers: list[Marker]) -> Handled | None:
        """Markers answered without doing the work: proxy errors and a relay's 401."""
        for marker in markers:
            if marker.name in HTTP_MARKERS:
                return Handled(nginx_reply(int(marker.name)), call.action, f"http_{marker.name}")
            if marker.name == "401relay":
                return Handled(relay_invalid_token(), call.action, "relay_401")
        return None

    def _dispatch(self, call: Call, body: dict[str, Any], faults: Faults) -> Answer:
        action = call.action
        if action == kinds.SUBMIT_ACTION:
            return self._submit(call, body, faults)
        if faults.code is not None:
            return _error(faults.code)
        if action == kinds.RESULT_ACTION:
            return self._get_result(call, body, faults)
        if action == kinds.CANCEL_ACTION:
            return self._cancel(body)
        job = self._validate(body)
        return Answer(
            SUCCESS, self._result_data(call, job, job.return_url, job.logo, faults.result)
        )

    def _validate(self, body: dict[str, Any]) -> Job:
        return validate(
            body.get("req_key"),
            body,
            fetch=self._fetch,
            extra_req_keys=self.config.extra_req_keys,
            lenient_ranges=self.config.lenient_ranges,
        )

    # --- async ------------------------------------------------------------------------

    def _submit(self, call: Call, body: dict[str, Any], faults: Faults) -> Answer:
        # A rate limit refuses the submission itself; any other code is the task's
        # final result, as when the service fails a task it had accepted.
        if faults.code in (QPS_LIMIT, CONCURRENCY_LIMIT):
            return _error(faults.code)
        job = self._validate(body)
        task = self.tasks.add(job, body, faults.code, faults.result)
        # A task bound to fail (an audit rejection, say) is not charged.
        return Answer(
            SUCCESS, {"task_id": task.task_id}, note=task.task_id, billable=faults.code is None
        )

    def _get_result(self, call: Call, body: dict[str, Any], faults: Faults) -> Answer:
        req_key, task_id = self._task_ref(body)
        options = _req_json(body.get("req_json"))
        task = self.tasks.get(task_id)
        if task is None or task.req_key != req_key:
            return _status("not_found")
        if self._expired(task):
            return _status("expired")
        polled = self.tasks.poll(task_id)
        polls = polled[1] if polled else 1
        waiting = self.config.async_polls
        if polls <= waiting:
            return _status("in_queue" if polls == 1 else "generating")
        if task.error_code is not None:
            return Answer(task.error_code, {"status": "done"}, note="done")
        return_url = options.get("return_url", task.job.return_url) is True
        logo = logo_of(options["logo_info"]) if "logo_info" in options else task.job.logo
        data = self._result_data(
            call, task.job, return_url, logo, task.result_fault or faults.result
        )
        data["status"] = "done"
        return Answer(SUCCESS, data, note="done")

    def _cancel(self, body: dict[str, Any]) -> Answer:
        req_key, task_id = self._task_ref(body)
        task = self.tasks.get(task_id)
        if task is not None and task.req_key == req_key and self._expired(task):
            return _status("expired")  # as a poll of it would say
        # A task is queued until a poll has reported it generating.
        queued_polls = 2 if self.config.async_polls >= 1 else 1
        outcome = self.tasks.cancel(task_id, req_key, queued_polls)
        if outcome == "not_found":
            return _status("not_found")
        if outcome == "started":
            raise invalid("task_id", "only a queued task can be cancelled; this one has started")
        return Answer(SUCCESS, {"task_id": task_id, "status": "cancelled"}, note="cancelled")

    def _task_ref(self, body: dict[str, Any]) -> tuple[str, str]:
        """The (req_key, task_id) a get-result or cancel names; an unknown req_key is
        refused with 50400 before any task is looked at, as CVProcess refuses it."""
        req_key = check_req_key(body.get("req_key"), self.config.extra_req_keys)
        task_id = body.get("task_id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id:
            raise invalid("task_id", "is required")
        return req_key, task_id

    def _expired(self, task: Task) -> bool:
        return time.monotonic() - task.created > self.config.task_ttl

    # --- results ----------------------------------------------------------------------

    def _result_data(
        self, call: Call, job: Job, return_url: bool, logo: synth.Logo | None, fault: str
    ) -> dict[str, Any]:
        picture = synth.Picture(job.req_key, job.prompt, job.seed, 0, job.width, job.height, logo)
        png = synth.png_bytes(picture, self.config.result_padding)
        if fault == "not-image":
            png = synth.NOT_AN_IMAGE
        images: list[str] = []
        urls: list[str] | None = None
        if fault == "bad-base64":
            images = [BAD_BASE64]
        elif return_url or fault == "expired-url":
            ttl = -1.0 if fault == "expired-url" else self.config.url_ttl
            urls = [self._publish(call, png, ttl)]
        else:
            images = [base64.b64encode(png).decode()]
        data: dict[str, Any] = {
            "algorithm_base_resp": {"status_code": 0, "status_message": "Success"},
            "binary_data_base64": images,
            "image_urls": urls,
            "request_id": call.rid,
            "seed": job.seed,
            "llm_result": "",
            "pe_result": "",
        }
        data.update(_extras(job, call.rid))
        return data

    def _publish(self, call: Call, png: bytes, ttl: float) -> str:
        token, expires = self.results.put(png, ttl)
        # A query string like a pre-signed link's, so clients must not name files by it.
        return (
            f"http://{call.req.host}{RESULTS_PATH}{token}.png"
            f"?X-Expires={int(expires)}&X-Signature=sandbox"
        )

    def download(self, path: str, headers: Mapping[str, str]) -> Reply:
        """``GET /__sandbox/results/<token>.png``: the file, or the bucket's refusal."""
        token = path[len(RESULTS_PATH) :].removesuffix(".png")
        credentials = any(headers.get(name) for name in CREDENTIAL_HEADERS)
        served = self.results.get(token)
        self.stats.download(
            served=bool(served and served.data is not None), with_credentials=credentials
        )
        if served is None:
            return storage_error(404, "NoSuchKey", "The specified key does not exist.")
        if served.data is None:
            return storage_error(403, "AccessDenied", "Request has expired")
        return Reply(200, served.data, "image/png")

    def _fetch(self, url: str) -> bytes | None:
        """Image URLs in requests: our own result links are read from memory (no
        download counted), other loopback URLs are fetched, others never contacted."""
        parts = urlsplit(url)
        if is_loopback_host(parts.hostname or "") and parts.path.startswith(RESULTS_PATH):
            token = parts.path[len(RESULTS_PATH) :].removesuffix(".png")
            served = self.results.get(token)
            if served is not None and served.data is not None:
                return served.data
        return fetch_loopback(url)

    # --- replies ----------------------------------------------------------------------

    def _envelope(self, call: Call, answer: Answer) -> Reply:
        status = 200 if answer.code == SUCCESS else http_status(answer.code)
        body = envelope(
            answer.code, answer.data, rid=call.rid, started=call.started, text=answer.text
        )
        return json_reply(status, body, answer.headers)

    def _gateway(self, call: Call, error: GatewayError) -> Reply:
        return gateway_reply(error, rid=call.rid, action=call.action, version=call.version)

    def _answered(
        self, call: Call, answer: Answer, body: dict[str, Any], faults: Faults
    ) -> Handled:
        """The envelope, then what markers and the dice do to its delivery."""
        reply = self._envelope(call, answer)
        billed = call.action in BILLED_ACTIONS and answer.code == SUCCESS and answer.billable
        outcome = "ok" if answer.code == SUCCESS else str(answer.code)
        if answer.code == SUCCESS and faults.result:
            outcome = faults.result.replace("-", "_")
        delivery = faults.delivery
        if not delivery and self.dice.roll(self.config.drop_rate):
            delivery = "drop"
        elif not delivery and self.dice.roll(self.config.truncate_rate):
            delivery = "truncate"
        if delivery == "malformed-json":
            reply = Reply(200, MALFORMED_BODY + b"\n<!-- upstream closed -->")
            outcome = "malformed_json"
        elif delivery:
            reply.delivery = delivery
            outcome = {"drop": "dropped", "truncate": "truncated", "trickle": "trickled"}[delivery]
        req_key = body.get("req_key") if isinstance(body.get("req_key"), str) else ""
        return Handled(reply, call.action, outcome, billed, str(req_key), answer.note)

    def _record(self, call: Call, handled: Handled) -> None:
        req = call.req
        body = shorten_body(req.body, call.body)
        req_key = handled.req_key or (body.get("req_key") if isinstance(body, dict) else "")
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "action": handled.action,
            "version": call.version,
            "query": req.query,
            "auth": "bearer" if req.style == "gateway" else "v4",
            "style": req.style,
            "req_key": req_key if isinstance(req_key, str) else "",
            "body": body,
            "headers": masked_headers(req.headers),
            "outcome": handled.outcome,
            "status": handled.reply.status,
            "billed": handled.billed,
            "request_id": call.rid,
            "note": handled.note,
            "duration_ms": round((time.monotonic() - call.started) * 1000, 3),
        }
        self.stats.record(
            handled.action or "(none)",
            handled.outcome,
            billed_body=call.body_sha256 if handled.billed else None,
            entry=entry,
            recent_limit=self.config.recent_limit,
        )
        if self.config.log_requests:
            sys.stderr.write(
                f"{req.method} {req.path}?{req.query} -> {handled.reply.status} "
                f"{handled.outcome} ({entry['duration_ms']} ms)\n"
            )


def _faults(markers: list[Marker]) -> Faults:
    code = next((marker.code for marker in markers if marker.code is not None), None)
    delivery = next((m.name for m in markers if m.name in TRANSPORT_MARKERS), "")
    result = next((m.name for m in markers if m.name in RESULT_MARKERS), "")
    return Faults(code, delivery, result)


def _error(code: int) -> Answer:
    headers = [("Retry-After", "1")] if code in (QPS_LIMIT, CONCURRENCY_LIMIT) else []
    return Answer(code, headers=headers)


def _status(status: str) -> Answer:
    return Answer(
        SUCCESS, {"status": status, "binary_data_base64": None, "image_urls": None}, note=status
    )


def _req_json(value: object) -> dict[str, Any]:
    """``req_json`` is a *serialized* JSON object (a string), per the reference."""
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        raise invalid("req_json", "must be a string holding a JSON object")
    try:
        parsed = loads(value)
    except NotJson:
        raise invalid("req_json", "is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise invalid("req_json", "must hold a JSON object")
    return parsed


_FLOURISHES: Final = (
    "highly detailed",
    "soft natural light",
    "cinematic composition",
    "rich colours",
    "sharp focus",
    "8k",
    "gentle depth of field",
    "warm tones",
    "studio quality",
)


def _extras(job: Job, rid: str) -> dict[str, Any]:
    """The per-req_key extras of ``data`` (reference B.1)."""
    out: dict[str, Any] = {}
    key = synth.digest(job.req_key, job.prompt, job.seed, 0)
    if job.req_key in (kinds.TXT2IMG.req_key, kinds.CONTROLNET.req_key) and job.rephraser:
        words = [_FLOURISHES[byte % len(_FLOURISHES)] for byte in key[:3]]
        out["rephraser_result"] = ", ".join([job.prompt, *dict.fromkeys(words)])
    # Both kinds' answers carry the tags (reference C.4, C.5); controlnet has no switch
    # for them, so only an explicit use_predict_tags=false leaves them out.
    if job.req_key in (kinds.TXT2IMG.req_key, kinds.CONTROLNET.req_key) and job.predict_tags:
        tags = [
            {"tag": _FLOURISHES[byte % len(_FLOURISHES)], "prob": round(byte / 255, 3)}
            for byte in key[3:5]
        ]
        out["predict_tags_result"] = json.dumps(tags, ensure_ascii=False)
    if job.req_key == kinds.EDIT.req_key:
        out["vlm_result"] = ""
        out["infer_ctx"] = {
            "algorithm_key": "high_aes_scheduler_seededit_v1.6",
            "app_key": "volccli-sandbox",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "generate_id": key.hex()[:32],
            "log_id": rid,
        }
    return out


def parse_body(raw: bytes) -> Any:
    """The body's JSON value, or NOT_JSON."""
    try:
        return loads(raw)
    except NotJson:
        return NOT_JSON


def shorten_body(raw: bytes, parsed: Any = _UNREAD) -> Any:
    """The body for stats: JSON with every base64 image replaced by a short summary;
    ``parsed`` is ``parse_body(raw)`` when the caller has it."""
    value = parse_body(raw) if parsed is _UNREAD else parsed
    if value is NOT_JSON:
        text = raw[:2000].decode("utf-8", "replace")
        return text + (f"... ({len(raw)} bytes)" if len(raw) > 2000 else "")
    return _shorten(value, in_images=False)


def _shorten(value: Any, *, in_images: bool) -> Any:
    if isinstance(value, dict):
        return {
            key: _shorten(item, in_images=key == "binary_data_base64")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_shorten(item, in_images=in_images) for item in value]
    if isinstance(value, str) and (in_images or len(value) > _SHORTEN_OVER):
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        return (
            f"<base64 {len(value)} bytes sha256={digest}>"
            if in_images or _b64ish(value)
            else value[:_SHORTEN_OVER] + f"... ({len(value)} chars)"
        )
    return value


def _b64ish(text: str) -> bool:
    return all(ch.isalnum() or ch in "+/=\n\r" for ch in text[:512])


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {name: ("***" if name.lower() in SECRET_HEADERS else value) for name, value in items}
