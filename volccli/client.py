"""The HTTP client: one session, timeouts, the retry policy, envelope parsing, typed errors.

Retry policy: a request that was certainly not processed (HTTP 429, 50429, 50430, a
connection that could not be made) is resent with exponential backoff and jitter,
honouring Retry-After. A request the server may have processed (5xx, a read timeout, a
dropped or cut-short answer) is billed, so it is resent only with --retry-server-errors.
In a batch, rate-limit refusals have a budget of their own (see ApiClient._waits_out).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3

from . import __version__, codes
from .connection import Connection
from .errors import NetworkError, RateLimitError, VolccliError
from .payload import EncodedBody

USER_AGENT = f"volccli/{__version__}"
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 120.0
# Rate-limit refusals a batch request may wait out beyond --retries (see _waits_out).
BATCH_RATE_LIMIT_RETRIES = 30
MAX_RESPONSE_BYTES = 512 * 1024 * 1024
_READ_CHUNK = 256 * 1024


class Limiter(Protocol):
    """Client-side rate limiting with feedback (see ratelimit.AdaptiveLimiter).

    A limiter that also has ``successes`` (how many requests succeeded so far) and
    ``throttling`` (True while refusals hold it below its configured limits), as
    AdaptiveLimiter does, gives rate-limit refusals the batch budget of ``_waits_out``.
    """

    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def rate_limited(self, code: int | str | None) -> None: ...
    def succeeded(self) -> None: ...


@dataclass
class Envelope:
    """A successful answer."""

    body: dict[str, Any]
    http_status: int
    elapsed: float
    attempts: int
    retries: list[str] = field(default_factory=list)
    # An earlier attempt failed in a way the server may still have acted on (a server
    # error, a lost answer): this answer may describe the world after it.
    resent: bool = False

    @property
    def data(self) -> dict[str, Any]:
        data = self.body.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def request_id(self) -> str:
        return str(self.body.get("request_id") or self.data.get("request_id") or "")


Event = Callable[[str, dict[str, Any]], None]


def no_event(kind: str, info: dict[str, Any]) -> None:
    return None


def environment_settings(url: str) -> dict[str, Any]:
    """Proxies and CA bundle from the environment, without ~/.netrc.

    Sessions run with trust_env off because requests would otherwise replace our
    Authorization header with .netrc credentials, and would send .netrc credentials to
    image hosts.
    """
    verify: bool | str = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    # A proxy cannot reach this machine's loopback (the sandbox, a local relay): go direct.
    direct = _is_loopback(urlsplit(url).hostname or "")
    proxies = {} if direct else requests.utils.get_environ_proxies(url)
    return {"proxies": proxies, "verify": verify}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    return session


class ApiClient:
    def __init__(
        self,
        connection: Connection,
        *,
        session: requests.Session | None = None,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.connection = connection
        self.session = session or new_session()
        self.limiter = limiter
        self.sleep = sleep
        self.rng = rng or random.Random()

    def close(self) -> None:
        self.session.close()

    def call(
        self,
        action: str,
        version: str,
        body: EncodedBody,
        *,
        on_event: Event = no_event,
        unbilled: bool = False,
    ) -> Envelope:
        """Send one request under the retry policy; return the success envelope or raise.

        ``unbilled`` marks a request the service does not charge for (a task's result, a
        cancel): its server errors, timeouts and dropped answers are then retried like
        rate limits, since sending it again costs nothing.
        """
        conn = self.connection
        url = conn.url(action, version)
        env = environment_settings(url)
        started = time.monotonic()
        notes: list[str] = []
        attempt = 0
        counted = 0  # attempts that count against --retries
        waited_out = 0  # rate-limit refusals that did not (see _waits_out)
        progress: int | None = -1 if self._progress() is not None else None
        resent = False
        while True:
            attempt += 1
            on_event("attempt", {"attempt": attempt})
            try:
                envelope = self._attempt(url, body, env)
            except VolccliError as error:
                resend = unbilled or self.connection.retry_server_errors
                delay: float | None
                if self._waits_out(error, progress, waited_out):
                    waited_out += 1
                    # The first step's pause (and Retry-After): the limiter paces the rest.
                    delay = self._backoff(error, 1)
                else:
                    counted += 1
                    delay = self._retry_delay(error, counted, resend)
                progress = self._progress()
                if delay is None:
                    if error.retry == "server" and resend:
                        # The usual hint says --retry-server-errors resends: it just did.
                        error.hint = _gave_up_hint(counted)
                    raise
                reason = f"{error.message} (code {error.code})" if error.code else error.message
                notes.append(reason)
                resent = resent or error.retry == "server"
                on_event("retry", {"attempt": attempt, "reason": reason, "delay": delay})
                self.sleep(delay)
                continue
            envelope.attempts = attempt
            envelope.retries = notes
            envelope.resent = resent
            envelope.elapsed = time.monotonic() - started
            return envelope

    def _retry_delay(self, error: VolccliError, attempt: int, resend: bool) -> float | None:
        """The pause before resending after the ``attempt``-th counted attempt, or None."""
        retry = error.retry
        if attempt > self.connection.retries:
            return None
        if retry == "safe" or (retry == "server" and resend):
            return self._backoff(error, attempt)
        return None

    def _backoff(self, error: VolccliError, attempt: int) -> float:
        """Exponential backoff with jitter, and at least the server's Retry-After (capped)."""
        backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        delay = backoff / 2 + self.rng.uniform(0, backoff / 2)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        return delay

    def _progress(self) -> int | None:
        """The limiter's count of successful requests, or None without one that counts."""
        return getattr(self.limiter, "successes", None)

    def _waits_out(self, error: VolccliError, progress: int | None, waited_out: int) -> bool:
        """Is this refusal one to wait out without spending --retries on it?

        In a batch the limiter slows every worker down until the rate and the number in
        flight fit the account's limits, and until then some requests are still refused.
        Such a refusal (never billed) says "wait", not "give up": failing a job after
        --retries of them would fail jobs of a batch that is only finding its pace. So a
        rate-limit refusal does not count against --retries while the limiter is
        throttling (it slowed down for this refusal or an earlier one), if it is this
        request's first or other requests got through since its previous one
        (``progress`` is the limiter's count of successes then, -1 before the first),
        for up to BATCH_RATE_LIMIT_RETRIES refusals. When nothing gets through (an
        account that refuses everything) they count as before, so such a batch still
        ends; --retries governs every other error.
        """
        if not isinstance(error, RateLimitError) or progress is None:
            return False
        if waited_out >= BATCH_RATE_LIMIT_RETRIES:
            return False
        limiter = self.limiter
        throttling = bool(getattr(limiter, "throttling", False))
        return throttling and getattr(limiter, "successes", 0) > progress

    def _attempt(self, url: str, body: EncodedBody, env: dict[str, Any]) -> Envelope:
        conn = self.connection
        headers = conn.auth.headers("POST", url, body.sha256)
        if self.limiter is not None:
            self.limiter.acquire()
        started = time.monotonic()
        try:
            try:
                response = self._post(url, body, headers, env)
                content = read_limited(response, started + conn.timeout)
            except requests.exceptions.RequestException as exc:
                raise transport_error(exc, conn.timeout) from None
            try:
                envelope = parse_response(
                    response.status_code, content, response.headers, mode=conn.mode
                )
            except VolccliError as error:
                if isinstance(error, RateLimitError) and self.limiter is not None:
                    self.limiter.rate_limited(error.code)
                raise
        finally:
            if self.limiter is not None:
                self.limiter.release()
        if self.limiter is not None:
            self.limiter.succeeded()
        envelope.elapsed = time.monotonic() - started
        return envelope

    def _post(
        self, url: str, body: EncodedBody, headers: dict[str, str], env: dict[str, Any]
    ) -> requests.Response:
        """One POST straight through the session's adapter, answer not yet read.

        ``Session.post`` would also build a cookie jar for the request and read cookies
        from the answer, run hooks and look for a redirect to follow; this API uses none
        of them (answers are never redirected on purpose, and a redirect is not
        followed). Skipping them saves about a quarter of a millisecond of CPU per call,
        a few percent of a batch job's whole cost.
        """
        prepared = requests.PreparedRequest()
        prepared.prepare_method("POST")
        prepared.prepare_url(url, None)
        prepared.prepare_headers({**self.session.headers, **headers})
        prepared.prepare_body(body.stream(), None)
        conn = self.connection
        return self.session.get_adapter(url).send(
            prepared,
            stream=True,
            timeout=(conn.connect_timeout, conn.timeout),
            verify=env["verify"],
            proxies=env["proxies"],
            cert=None,
        )


def _gave_up_hint(attempts: int) -> str:
    tries = f"{attempts} attempts (--retries {attempts - 1})" if attempts > 1 else "one attempt"
    return f"gave up after {tries}; retry later, or raise --retries"


def read_limited(
    response: requests.Response, deadline: float, limit: int = MAX_RESPONSE_BYTES
) -> bytes:
    """Read the whole answer, failing on a total deadline (a trickle beats read timeouts)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in arriving(response, _READ_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise NetworkError(
                    f"the answer is larger than {limit // (1024 * 1024)} MB",
                    "this is not an answer of the API; check the endpoint",
                    maybe_billed=True,
                    retry="server",
                )
            if time.monotonic() > deadline:
                raise NetworkError(
                    "the answer arrived too slowly and was abandoned at --timeout",
                    "raise --timeout, or check the network; the request may have been billed",
                    maybe_billed=True,
                    retry="server",
                )
    finally:
        response.close()
    return b"".join(chunks)


def arriving(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body in pieces of at most ``size`` bytes, each as soon as it has arrived.

    ``iter_content`` waits until a whole piece is in, so an answer that trickles in
    slowly would never reach the caller's deadline check; ``read1`` returns what is there.
    Transport failures come out as the exceptions ``iter_content`` raises.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(size)
        return
    try:
        while chunk := read1(size, decode_content=True):
            yield chunk
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from None
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from None
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from None
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from None


def transport_error(exc: requests.exceptions.RequestException, timeout: float) -> VolccliError:
    """Classify a transport failure: was the request possibly received (and billed)?"""
    if isinstance(exc, requests.exceptions.ConnectTimeout) or _not_sent(exc):
        return NetworkError(
            f"cannot connect to the API ({_reason(exc)})",
            "check the network, --endpoint / --base-url and any proxy settings",
            retry="safe",
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return NetworkError(
            f"no answer within --timeout {timeout:g}s",
            "raise --timeout or use --async; the request may have been billed "
            "(--retry-server-errors resends)",
            maybe_billed=True,
            retry="server",
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return NetworkError(
            f"TLS failure talking to the API ({_reason(exc)})",
            "check the system clock and any proxy that intercepts TLS",
        )
    return NetworkError(
        f"the connection failed mid-request ({_reason(exc)})",
        "retry later; the request may have been billed (--retry-server-errors resends)",
        maybe_billed=True,
        retry="server",
    )


def _not_sent(exc: Exception) -> bool:
    """True when the failure happened before any byte of the request went out."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            (
                urllib3.exceptions.NewConnectionError,
                urllib3.exceptions.ConnectTimeoutError,
                urllib3.exceptions.NameResolutionError,
            ),
        ):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError):
            current = current.reason
            continue
        nested = [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        current = nested[0] if nested else (current.__cause__ or current.__context__)
    return False


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "Remote end closed connection",
        "Connection reset",
        "IncompleteRead",
        "Connection broken",
        "Connection aborted",
    ):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def parse_response(
    status: int, content: bytes, headers: Any = None, *, mode: str = "gateway"
) -> Envelope:
    """Turn one HTTP answer into a success Envelope or a typed error (the body first).

    ``mode`` (gateway or official) names what answered outside the API's envelopes: the
    relay, or something in front of the official endpoint.
    """
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        if status == 200:
            raise NetworkError(
                "the API answered HTTP 200 with a body that is not a JSON object",
                "retry later; the request may have been billed (--retry-server-errors resends)",
                maybe_billed=True,
                http_status=status,
                retry="server",
            )
        info = codes.relay(status, mode)
        raise _error(
            info,
            f"{info.meaning} (HTTP {status}{_snippet(content)})",
            status=status,
            headers=headers,
        )
    meta = body.get("ResponseMetadata")
    if isinstance(meta, dict) and isinstance(meta.get("Error"), dict):
        err = meta["Error"]
        name = codes.gateway_name(err.get("Code"), err.get("CodeN"))
        info = codes.gateway(name, status)
        text = str(err.get("Message") or "").strip()
        message = f"{name}: {info.meaning}" + (
            f" ({text})" if text and text != info.meaning else ""
        )
        raise _error(
            info,
            message,
            code=name,
            request_id=str(meta.get("RequestId") or ""),
            status=status,
            headers=headers,
        )
    code = body.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        if code == codes.SUCCESS:
            return Envelope(body, status, 0.0, 1)
        info = codes.business(code)
        text = str(body.get("message") or "").strip()
        message = f"{code} {info.meaning}" + (f" ({text})" if text else "")
        raise _error(
            info,
            message,
            code=code,
            request_id=str(body.get("request_id") or ""),
            status=status,
            headers=headers,
        )
    info = codes.relay(status if status != 200 else 502, mode)
    detail = _relay_message(body)
    raise _error(
        info,
        f"{info.meaning} (HTTP {status}{': ' + detail if detail else ''})",
        status=status,
        headers=headers,
    )


def _error(
    info: codes.CodeInfo,
    message: str,
    *,
    code: int | str | None = None,
    request_id: str = "",
    status: int | None = None,
    headers: Any = None,
) -> VolccliError:
    kwargs: dict[str, Any] = {
        "code": code,
        "request_id": request_id,
        "http_status": status,
        "retry": info.retry,
    }
    if info.error is RateLimitError:
        kwargs["retry_after"] = retry_after(headers)
    if info.error is NetworkError:
        kwargs["maybe_billed"] = info.retry == "server"
    return info.error(message, info.hint, **kwargs)


def _relay_message(body: dict[str, Any]) -> str:
    err = body.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or "")[:200]
    if isinstance(err, str):
        return err[:200]
    return str(body.get("message") or body.get("msg") or "")[:200]


def _snippet(content: bytes) -> str:
    text = content[:2000].decode("utf-8", "replace")
    lowered = text.lower()
    if "<title>" in lowered:
        start = lowered.index("<title>") + 7
        end = lowered.find("</title>", start)
        text = text[start : end if end > 0 else start + 80]
    text = " ".join(text.split())[:80]
    return f": {text}" if text else ""
