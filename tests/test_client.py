"""Error classification and the retry policy, over real HTTP to the sandbox on loopback."""

from __future__ import annotations

import json
import random
import socket
import time
from email.utils import formatdate
from typing import Any

import pytest
import requests

from volccli.auth import BearerAuth
from volccli.client import ApiClient, parse_response, retry_after, transport_error
from volccli.connection import Connection
from volccli.errors import (
    ApiRefusedError,
    AuditError,
    ConfigError,
    ExitCode,
    NetworkError,
    RateLimitError,
)
from volccli.payload import encode_body
from volccli.sandbox import API_KEY, Sandbox

# --- parse_response -----------------------------------------------------------------------


def envelope(code: int, message: str = "", **extra: Any) -> bytes:
    body = {"code": code, "message": message, "request_id": "RID1", "data": None, **extra}
    return json.dumps(body).encode()


def test_success_envelope() -> None:
    content = json.dumps(
        {"code": 10000, "data": {"binary_data_base64": ["x"]}, "request_id": "R"}
    ).encode()
    result = parse_response(200, content)
    assert result.request_id == "R" and result.data == {"binary_data_base64": ["x"]}
    nested = parse_response(200, b'{"code": 10000, "data": {"request_id": "IN"}}')
    assert nested.request_id == "IN"


@pytest.mark.parametrize(
    ("status", "code", "error", "exit_code", "retry"),
    [
        (400, 50400, ApiRefusedError, ExitCode.REFUSED, "never"),
        (400, 50215, ApiRefusedError, ExitCode.REFUSED, "never"),
        (400, 50411, AuditError, ExitCode.AUDIT, "never"),
        (400, 50412, AuditError, ExitCode.AUDIT, "never"),
        (400, 50511, AuditError, ExitCode.AUDIT, "filtered"),
        (400, 50519, AuditError, ExitCode.AUDIT, "filtered"),
        (429, 50429, RateLimitError, ExitCode.RATE_LIMITED, "safe"),
        (429, 50430, RateLimitError, ExitCode.RATE_LIMITED, "safe"),
        (500, 50500, NetworkError, ExitCode.NETWORK, "server"),
        (500, 50501, NetworkError, ExitCode.NETWORK, "server"),
        (500, 50599, NetworkError, ExitCode.NETWORK, "server"),
    ],
)
def test_business_codes(
    status: int, code: int, error: type, exit_code: ExitCode, retry: str
) -> None:
    with pytest.raises(error) as info:
        parse_response(status, envelope(code, "Server Says"), {"Retry-After": "4"})
    err = info.value
    assert err.exit_code == exit_code
    assert err.code == code and err.request_id == "RID1" and err.http_status == status
    assert err.retry == retry
    assert err.message.startswith(f"{code} ") and "(Server Says)" in err.message
    assert err.hint
    if error is RateLimitError:
        assert err.retry_after == 4.0
    if error is NetworkError:
        assert err.maybe_billed is True


def test_business_code_is_read_even_on_http_200() -> None:
    with pytest.raises(AuditError):
        parse_response(200, envelope(50412))


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("SignatureDoesNotMatch", ConfigError),
        ("InvalidTimestamp", ConfigError),
        ("InvalidAccessKey", ConfigError),
        ("AccessDenied", ApiRefusedError),
        ("InvalidActionOrVersion", ApiRefusedError),
        ("FlowLimitExceeded", RateLimitError),
        ("SomethingNew", ApiRefusedError),
    ],
)
def test_response_metadata_errors(name: str, error: type) -> None:
    body = {
        "ResponseMetadata": {
            "RequestId": "META-RID",
            "Action": "CVProcess",
            "Error": {"CodeN": 100010, "Code": name, "Message": "detail text"},
        },
        "code": 10000,  # ignored once ResponseMetadata.Error is present
    }
    with pytest.raises(error) as info:
        parse_response(401, json.dumps(body).encode())
    assert info.value.code == name
    assert info.value.request_id == "META-RID"
    assert info.value.message.startswith(f"{name}: ")
    assert "(detail text)" in info.value.message


@pytest.mark.parametrize(
    ("status", "error", "detail"),
    [
        (401, ConfigError, "invalid token"),
        (402, ApiRefusedError, "invalid token"),
        (403, ApiRefusedError, "invalid token"),
        (404, ConfigError, "invalid token"),
        (413, ApiRefusedError, "invalid token"),
        (429, RateLimitError, "invalid token"),
        (502, NetworkError, "invalid token"),
        (418, ApiRefusedError, "invalid token"),
    ],
)
def test_relay_json(status: int, error: type, detail: str) -> None:
    body = json.dumps({"error": {"message": detail, "type": "new_api_error"}}).encode()
    with pytest.raises(error) as info:
        parse_response(status, body, {"Retry-After": "2"})
    assert f"HTTP {status}" in info.value.message and detail in info.value.message
    assert info.value.http_status == status
    if error is RateLimitError:
        assert info.value.retry == "safe" and info.value.retry_after == 2.0


def test_relay_json_without_error_object_at_200_is_a_server_failure() -> None:
    with pytest.raises(NetworkError) as info:
        parse_response(200, b'{"msg": "upstream hiccup"}')
    assert "upstream hiccup" in info.value.message


def test_non_json_error_pages_show_their_title() -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    with pytest.raises(NetworkError) as info:
        parse_response(502, html)
    assert "502 Bad Gateway" in info.value.message and "<title>" not in info.value.message
    assert info.value.retry == "server" and info.value.maybe_billed
    with pytest.raises(ApiRefusedError) as refused:
        parse_response(413, b"Request Entity Too Large")
    assert "Request Entity Too Large" in refused.value.message


@pytest.mark.parametrize("content", [b"", b"<html>oops</html>", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_http_200_that_is_not_a_json_object(content: bytes) -> None:
    with pytest.raises(NetworkError) as info:
        parse_response(200, content)
    assert info.value.maybe_billed is True
    assert info.value.retry == "server"
    assert "not a JSON object" in info.value.message


def test_a_boolean_code_is_not_a_code() -> None:
    with pytest.raises(NetworkError):
        parse_response(200, b'{"code": true, "data": {}}')


# --- Retry-After --------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    assert retry_after({"Retry-After": "5"}) == 5.0
    assert retry_after({"Retry-After": "1.5"}) == 1.5
    assert retry_after({"Retry-After": "-3"}) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after(None) is None
    future = retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert future is not None and 25 <= future <= 31
    assert retry_after({"Retry-After": formatdate(time.time() - 30, usegmt=True)}) == 0.0


# --- transport errors ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settle(sandbox: Sandbox, count: int, timeout: float = 5.0) -> None:
    """Wait until the sandbox has finished ``count`` API requests (abandoned ones too)."""
    deadline = time.monotonic() + timeout
    while sum(sum(c.values()) for c in sandbox.stats()["requests"].values()) < count:
        assert time.monotonic() < deadline, "the sandbox never finished the request"
        time.sleep(0.02)


def test_a_refused_connection_was_not_sent() -> None:
    with pytest.raises(requests.exceptions.RequestException) as info:
        requests.post(f"http://127.0.0.1:{_closed_port()}/", data=b"{}", timeout=5)
    error = transport_error(info.value, 5)
    assert isinstance(error, NetworkError)
    assert error.retry == "safe" and error.maybe_billed is False
    assert "connection refused" in error.message


def test_a_read_timeout_may_have_been_billed(fresh_sandbox: Sandbox) -> None:
    body = json.dumps(
        {"req_key": "high_aes_general_v14", "prompt": "volccli-fault:sleep=0.5"}
    ).encode()
    with pytest.raises(requests.exceptions.RequestException) as info:
        requests.post(
            f"{fresh_sandbox.base_url}/volcv/v1?Action=CVProcess&Version=2022-08-31",
            data=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=(5, 0.2),
        )
    error = transport_error(info.value, 0.2)
    assert error.retry == "server" and getattr(error, "maybe_billed", False) is True
    assert "--timeout 0.2s" in error.message
    settle(fresh_sandbox, 1)  # the sandbox did the work (and billed it) all the same
    assert fresh_sandbox.stats()["billed"] == 1


def test_a_connection_cut_mid_answer_may_have_been_billed() -> None:
    cut = requests.exceptions.ConnectionError(
        "('Connection aborted.', RemoteDisconnected('Remote end closed connection'))"
    )
    error = transport_error(cut, 5)
    assert error.retry == "server" and getattr(error, "maybe_billed", False) is True


# --- the retry policy ---------------------------------------------------------------------


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client_for(
    sandbox: Sandbox, *, retries: int = 3, server: bool = False, timeout: float = 10
) -> tuple[ApiClient, Sleeps]:
    sleeps = Sleeps()
    connection = Connection(
        "gateway", sandbox.base_url, BearerAuth(API_KEY), timeout, 5.0, retries, server
    )
    return ApiClient(connection, sleep=sleeps, rng=random.Random(7)), sleeps


def body(prompt: str) -> Any:
    return encode_body({"req_key": "high_aes_general_v14", "prompt": prompt, "seed": 1})


def calls(sandbox: Sandbox) -> dict[str, int]:
    return sandbox.stats()["requests"].get("CVProcess", {})


@pytest.mark.parametrize("code", [50429, 50430])
def test_rate_limits_are_retried_honouring_retry_after(fresh_sandbox: Sandbox, code: int) -> None:
    client, sleeps = client_for(fresh_sandbox)
    result = client.call("CVProcess", "2022-08-31", body(f"fox volccli-fault:{code}x2"))
    assert result.attempts == 3 and len(result.retries) == 2
    assert all(str(code) in note for note in result.retries)
    assert len(sleeps.delays) == 2
    assert all(delay >= 1.0 for delay in sleeps.delays)  # the sandbox says Retry-After: 1
    assert calls(fresh_sandbox) == {str(code): 2, "ok": 1}
    assert fresh_sandbox.stats()["billed"] == 1
    assert not result.resent  # a refused request was not acted on


def test_an_answer_after_a_resent_server_error_says_so(fresh_sandbox: Sandbox) -> None:
    client, _ = client_for(fresh_sandbox, server=True)
    result = client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50500x1"))
    assert result.attempts == 2 and result.resent


def test_relay_429_is_retried(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(qps=0.05, relay_429=True)
    client, sleeps = client_for(fresh_sandbox, retries=2)
    client.call("CVProcess", "2022-08-31", body("first"))  # takes the only token
    with pytest.raises(RateLimitError) as info:
        client.call("CVProcess", "2022-08-31", body("second"))
    assert info.value.exit_code == ExitCode.RATE_LIMITED
    assert info.value.http_status == 429
    assert len(sleeps.delays) == 2  # --retries 2: three attempts, two pauses
    # Retry-After (about 20 s here) outweighs the 1-2 s backoff
    assert all(delay >= 15 for delay in sleeps.delays)
    assert calls(fresh_sandbox) == {"ok": 1, "relay_429": 3}


def test_retries_stop_at_the_budget(fresh_sandbox: Sandbox) -> None:
    client, sleeps = client_for(fresh_sandbox, retries=1)
    with pytest.raises(RateLimitError) as info:
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50429x5"))
    assert info.value.code == 50429
    assert len(sleeps.delays) == 1
    assert calls(fresh_sandbox) == {"50429": 2}
    assert fresh_sandbox.stats()["billed"] == 0


def test_retry_after_is_capped(fresh_sandbox: Sandbox) -> None:
    client, sleeps = client_for(fresh_sandbox, retries=1)
    fresh_sandbox.configure(qps=0.001)  # Retry-After of about 1000 s
    client.call("CVProcess", "2022-08-31", body("first"))
    with pytest.raises(RateLimitError):
        client.call("CVProcess", "2022-08-31", body("second"))
    assert sleeps.delays == [120.0]


@pytest.mark.parametrize("marker", ["50500", "50501", "502"])
def test_server_errors_are_not_retried_by_default(fresh_sandbox: Sandbox, marker: str) -> None:
    client, sleeps = client_for(fresh_sandbox)
    with pytest.raises(NetworkError) as info:
        client.call("CVProcess", "2022-08-31", body(f"fox volccli-fault:{marker}x1"))
    assert info.value.exit_code == ExitCode.NETWORK
    assert info.value.maybe_billed is True
    assert sleeps.delays == []
    assert sum(calls(fresh_sandbox).values()) == 1


@pytest.mark.parametrize("marker", ["50500", "502", "drop", "truncate", "malformed-json"])
def test_server_errors_are_retried_when_asked(fresh_sandbox: Sandbox, marker: str) -> None:
    client, sleeps = client_for(fresh_sandbox, server=True)
    result = client.call("CVProcess", "2022-08-31", body(f"fox volccli-fault:{marker}x1"))
    assert result.attempts == 2 and len(sleeps.delays) == 1
    assert sum(calls(fresh_sandbox).values()) == 2


@pytest.mark.parametrize("marker", ["drop", "truncate", "malformed-json"])
def test_a_spoiled_answer_is_not_resent_by_default(fresh_sandbox: Sandbox, marker: str) -> None:
    client, sleeps = client_for(fresh_sandbox)
    with pytest.raises(NetworkError) as info:
        client.call("CVProcess", "2022-08-31", body(f"fox volccli-fault:{marker}x1"))
    assert info.value.maybe_billed is True
    assert sleeps.delays == []
    assert sum(calls(fresh_sandbox).values()) == 1


def test_a_read_timeout_is_not_retried_unless_asked(fresh_sandbox: Sandbox) -> None:
    client, sleeps = client_for(fresh_sandbox, timeout=0.2)
    with pytest.raises(NetworkError) as info:
        client.call("CVProcess", "2022-08-31", body("slow volccli-fault:sleep=0.6x1"))
    assert info.value.maybe_billed is True and "--timeout" in info.value.message
    assert sleeps.delays == []
    settle(fresh_sandbox, 1)
    time.sleep(0.1)
    assert sum(calls(fresh_sandbox).values()) == 1
    client, sleeps = client_for(fresh_sandbox, timeout=0.2, server=True)
    result = client.call("CVProcess", "2022-08-31", body("slow2 volccli-fault:sleep=0.6x1"))
    assert result.attempts == 2 and len(sleeps.delays) == 1
    settle(fresh_sandbox, 3)


def test_a_refused_connection_is_retried_then_reported() -> None:
    sleeps = Sleeps()
    connection = Connection(
        "gateway", f"http://127.0.0.1:{_closed_port()}", BearerAuth("k"), 5.0, 2.0, 2
    )
    client = ApiClient(connection, sleep=sleeps, rng=random.Random(1))
    with pytest.raises(NetworkError) as info:
        client.call("CVProcess", "2022-08-31", body("x"))
    assert info.value.exit_code == ExitCode.NETWORK and not info.value.maybe_billed
    assert len(sleeps.delays) == 2
    # exponential backoff with jitter: attempt n waits within [2^(n-1)/2, 2^(n-1)]
    assert 0.5 <= sleeps.delays[0] <= 1.0 and 1.0 <= sleeps.delays[1] <= 2.0


def test_refusals_are_not_retried(fresh_sandbox: Sandbox) -> None:
    client, sleeps = client_for(fresh_sandbox)
    with pytest.raises(AuditError):
        client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50412"))
    with pytest.raises(ApiRefusedError):
        client.call("CVProcess", "2022-08-31", encode_body({"req_key": "nope"}))
    assert sleeps.delays == []


class RecordingLimiter:
    def __init__(self) -> None:
        self.events: list[str] = []

    def acquire(self) -> None:
        self.events.append("acquire")

    def release(self) -> None:
        self.events.append("release")

    def rate_limited(self, code: int | str | None) -> None:
        self.events.append(f"limited {code}")

    def succeeded(self) -> None:
        self.events.append("ok")


def test_the_limiter_hears_about_every_attempt(fresh_sandbox: Sandbox) -> None:
    client, _ = client_for(fresh_sandbox)
    limiter = RecordingLimiter()
    client.limiter = limiter
    client.call("CVProcess", "2022-08-31", body("fox volccli-fault:50429x1"))
    assert limiter.events == ["acquire", "limited 50429", "release", "acquire", "release", "ok"]


def test_environment_proxies_apply_except_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from volccli.client import environment_settings

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    remote = environment_settings("https://visual.volcengineapi.com/?Action=CVProcess")
    assert remote["proxies"]["https"] == "http://proxy.example:3128"
    for url in ("http://127.0.0.1:8080/volcv/v1", "http://localhost:1/", "http://[::1]:9/"):
        assert environment_settings(url)["proxies"] == {}
