"""Fault injection of the sandbox: limits, random faults, latency and marker words."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import threading
import time
from typing import Any

import pytest
import requests
from PIL import Image, UnidentifiedImageError

from volccli.auth import V4Auth
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, Sandbox
from volccli.sandbox.faults import find_markers

TXT2IMG = "high_aes_general_v14"
VERSION = "2022-08-31"
SMALL = {"req_key": TXT2IMG, "prompt": "fault", "width": 256, "height": 256}


def post(
    sb: Sandbox,
    body: dict[str, Any],
    action: str = "CVProcess",
    timeout: float = 10,
    session: requests.Session | None = None,
) -> requests.Response:
    send = session or requests
    return send.post(
        f"{sb.base_url}/volcv/v1?Action={action}&Version={VERSION}",
        data=json.dumps(body).encode(),
        timeout=timeout,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )


def signed(sb: Sandbox, body: dict[str, Any]) -> requests.Response:
    url = f"{sb.base_url}/?Action=CVProcess&Version={VERSION}"
    data = json.dumps(body).encode()
    headers = V4Auth(ACCESS_KEY, SECRET_KEY).headers("POST", url, hashlib.sha256(data).hexdigest())
    return requests.post(url, data=data, headers=headers, timeout=10)


def marked(marker: str, **extra: Any) -> dict[str, Any]:
    return {**SMALL, "prompt": f"a cat volccli-fault:{marker}", **extra}


def outcomes(sb: Sandbox) -> dict[str, int]:
    return sb.stats()["requests"].get("CVProcess", {})


# --- limits -------------------------------------------------------------------------------


def test_qps_limit(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(qps=2)
    session = requests.Session()
    answers = [post(sb, SMALL, session=session) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    limited = answers[2]
    assert limited.json()["code"] == 50429
    assert limited.json()["message"] == "Request Has Reached API Limit, Please Try Later"
    assert int(limited.headers["Retry-After"]) >= 1
    stats = sb.stats()
    assert stats["billed"] == 2 and outcomes(sb) == {"ok": 2, "50429": 1}
    time.sleep(0.55)  # one token back at 2/s
    assert post(sb, SMALL, session=session).status_code == 200


def test_relay_429_in_gateway_style_only(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(qps=1, relay_429=True)
    assert post(sb, SMALL).status_code == 200
    relay = post(sb, SMALL)
    assert relay.status_code == 429 and "error" in relay.json()
    assert int(relay.headers["Retry-After"]) >= 1
    official = signed(sb, SMALL)  # the official API never answers in a relay's shape
    assert official.status_code == 429 and official.json()["code"] == 50429


def test_concurrency_limit(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(concurrency=1, latency=0.4)
    results: list[requests.Response] = []

    def send() -> None:
        results.append(post(sb, SMALL))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    codes = sorted(response.json()["code"] for response in results)
    assert codes == [10000, 50430]
    limited = next(response for response in results if response.json()["code"] == 50430)
    assert limited.status_code == 429
    assert limited.json()["message"] == (
        "Request Has Reached API Concurrent Limit, Please Try Later"
    )
    assert sb.stats()["in_flight_max"] == 2 and sb.stats()["billed"] == 1


def test_sequential_client_never_trips_concurrency(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(concurrency=1)
    session = requests.Session()
    assert all(post(fresh_sandbox, SMALL, session=session).status_code == 200 for _ in range(10))
    assert fresh_sandbox.stats()["in_flight_max"] == 1


# --- random faults ------------------------------------------------------------------------


def test_error_rate(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(error_rate=1)
    response = post(fresh_sandbox, SMALL)
    assert response.status_code == 500
    assert (response.json()["code"], response.json()["message"]) == (50500, "Internal Error")
    assert fresh_sandbox.stats()["billed"] == 0


def test_fault_seed_repeats_a_run(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox

    def run() -> list[int]:
        sb.configure(error_rate=0.5, fault_seed=11)
        return [post(sb, SMALL).status_code for _ in range(12)]

    first = run()
    sb.reset()
    assert run() == first
    assert set(first) == {200, 500}


def test_drop_rate(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(drop_rate=1)
    with pytest.raises(requests.ConnectionError):
        post(fresh_sandbox, SMALL)
    stats = fresh_sandbox.stats()
    assert stats["billed"] == 1 and outcomes(fresh_sandbox) == {"dropped": 1}


def test_truncate_rate(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(truncate_rate=1)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        post(fresh_sandbox, SMALL)
    assert fresh_sandbox.stats()["billed"] == 1
    assert outcomes(fresh_sandbox) == {"truncated": 1}


def test_latency_fixed_and_range(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(latency="0.25")
    started = time.monotonic()
    post(sb, SMALL)
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    requests.get(f"{sb.base_url}/__sandbox/stats", timeout=5)
    assert time.monotonic() - started < 0.2  # not added to stats or downloads
    sb.configure(latency="0.1-0.2")
    started = time.monotonic()
    post(sb, SMALL)
    assert 0.1 <= time.monotonic() - started < 1.0


# --- markers ------------------------------------------------------------------------------

CODES = [
    (50411, 400, "Pre Img Risk Not Pass"),
    (50412, 400, "Text Risk Not Pass"),
    (50413, 400, "Post Text Risk Not Pass"),
    (50511, 400, "Post Img Risk Not Pass"),
    (50519, 400, "Post Img Risk Not Pass: Copyright"),
    (50429, 429, "Request Has Reached API Limit, Please Try Later"),
    (50430, 429, "Request Has Reached API Concurrent Limit, Please Try Later"),
    (50500, 500, "Internal Error"),
    (50501, 500, "Internal RPC Error"),
    (50400, 400, "Access Denied: Internal Error"),
]


@pytest.mark.parametrize(("code", "status", "text"), CODES)
def test_code_markers(fresh_sandbox: Sandbox, code: int, status: int, text: str) -> None:
    response = post(fresh_sandbox, marked(str(code)))
    assert response.status_code == status
    payload = response.json()
    assert (payload["code"], payload["status"], payload["message"]) == (code, code, text)
    assert payload["data"] is None
    assert fresh_sandbox.stats()["billed"] == 0


def test_marker_in_any_string_field(fresh_sandbox: Sandbox) -> None:
    body = {"req_key": "img2img_e_commerce_style", "positive_prompt": "volccli-fault:50412"}
    assert post(fresh_sandbox, body).json()["code"] == 50412
    nested = {**SMALL, "note": {"deep": ["volccli-fault:50413"]}}
    assert post(fresh_sandbox, nested).json()["code"] == 50413


def test_repeat_suffix_fires_n_times(fresh_sandbox: Sandbox) -> None:
    body = marked("50429x2")
    codes = [post(fresh_sandbox, body).json()["code"] for _ in range(3)]
    assert codes == [50429, 50429, 10000]
    digest = hashlib.sha256(json.dumps(body).encode()).hexdigest()
    stats = fresh_sandbox.stats()
    assert stats["billed_by_body"] == {digest: 1}
    assert max(stats["billed_by_body"].values()) == 1  # the retry was billed once
    fresh_sandbox.reset()  # reset forgets the counts
    assert post(fresh_sandbox, body).json()["code"] == 50429


@pytest.mark.parametrize(
    ("marker", "title"),
    [
        ("502", "502 Bad Gateway"),
        ("503", "503 Service Temporarily Unavailable"),
        ("504", "504 Gateway Time-out"),
    ],
)
def test_proxy_status_markers(fresh_sandbox: Sandbox, marker: str, title: str) -> None:
    response = post(fresh_sandbox, marked(marker))
    assert response.status_code == int(marker)
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"<title>{title}</title>" in response.text and "nginx" in response.text
    assert fresh_sandbox.stats()["billed"] == 0


def test_relay_401_marker(fresh_sandbox: Sandbox) -> None:
    response = signed(fresh_sandbox, marked("401relay"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_drop_and_truncate_markers_are_billed(fresh_sandbox: Sandbox) -> None:
    with pytest.raises(requests.ConnectionError):
        post(fresh_sandbox, marked("drop"))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        post(fresh_sandbox, marked("truncate"))
    assert fresh_sandbox.stats()["billed"] == 2
    assert outcomes(fresh_sandbox) == {"dropped": 1, "truncated": 1}


def test_malformed_json_marker(fresh_sandbox: Sandbox) -> None:
    response = post(fresh_sandbox, marked("malformed-json"))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert fresh_sandbox.stats()["billed"] == 1


def test_bad_base64_and_not_image_markers(fresh_sandbox: Sandbox) -> None:
    bad = post(fresh_sandbox, marked("bad-base64")).json()
    assert bad["code"] == 10000
    with pytest.raises(binascii.Error):
        base64.b64decode(bad["data"]["binary_data_base64"][0], validate=True)
    junk = post(fresh_sandbox, marked("not-image")).json()
    raw = base64.b64decode(junk["data"]["binary_data_base64"][0], validate=True)
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(raw))
    assert fresh_sandbox.stats()["billed"] == 2


def test_trickle_marker_is_slow_but_steady(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(trickle_rate=3_000)
    started = time.monotonic()
    # The read timeout (per read) is shorter than the whole answer takes; it is loose
    # enough that a loaded machine still sends the first byte in time.
    response = post(fresh_sandbox, marked("trickle"), timeout=1.0)
    elapsed = time.monotonic() - started
    assert response.json()["code"] == 10000
    assert len(response.content) > 5_000
    assert elapsed >= len(response.content) / 3_000 * 0.8 > 1.0
    assert outcomes(fresh_sandbox) == {"trickled": 1}


def test_expired_url_marker(fresh_sandbox: Sandbox) -> None:
    data = post(fresh_sandbox, marked("expired-url", return_url=True)).json()["data"]
    download = requests.get(data["image_urls"][0], timeout=5)
    assert download.status_code == 403 and "Request has expired" in download.text


def test_sleep_marker(fresh_sandbox: Sandbox) -> None:
    started = time.monotonic()
    assert post(fresh_sandbox, marked("sleep=0.3")).json()["code"] == 10000
    assert time.monotonic() - started >= 0.3


def test_async_marker_fails_the_task_not_the_submission(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(async_polls=0)
    task = post(sb, marked("50511"), action="CVSync2AsyncSubmitTask").json()
    assert task["code"] == 10000
    result = post(
        sb, {"req_key": TXT2IMG, "task_id": task["data"]["task_id"]}, action="CVSync2AsyncGetResult"
    )
    assert result.status_code == 400
    assert result.json()["code"] == 50511 and result.json()["data"]["status"] == "done"
    assert sb.stats()["billed"] == 0
    limited = post(sb, marked("50429"), action="CVSync2AsyncSubmitTask")
    assert limited.status_code == 429 and sb.stats()["tasks"] == 1


def test_async_result_markers(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(async_polls=0)
    task = post(sb, marked("bad-base64"), action="CVSync2AsyncSubmitTask").json()["data"]
    done = post(
        sb, {"req_key": TXT2IMG, "task_id": task["task_id"]}, action="CVSync2AsyncGetResult"
    ).json()["data"]
    assert done["binary_data_base64"] == ["not*base64!"]


def test_find_markers_parsing() -> None:
    names = [
        (m.name, m.limit)
        for m in find_markers(
            'x volccli-fault:expired-url, volccli-fault:50429x3 "volccli-fault:sleep=1.5x2" '
            "volccli-fault:nonsense volccli-fault:99999"
        )
    ]
    assert names == [("expired-url", None), ("50429", 3), ("sleep=1.5", 2)]


def _raw(sandbox: Sandbox, head: str, body: bytes = b"") -> bytes:
    """Send bytes as they are (no client fixing the framing) and read the whole answer."""
    import socket

    host, port = sandbox.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while piece := conn.recv(65536):
            answer += piece
    return answer


@pytest.mark.parametrize(
    "path", ["/volcv/v1?Action=CVProcess&Version=2022-08-31", "/__sandbox/config"]
)
def test_a_huge_content_length_is_413_not_a_crash(fresh_sandbox: Sandbox, path: str) -> None:
    answer = _raw(
        fresh_sandbox,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        b"{}",
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]


def test_a_body_shorter_than_its_content_length_is_400(fresh_sandbox: Sandbox) -> None:
    answer = _raw(
        fresh_sandbox,
        "POST /__sandbox/config HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n",
        b"{}",
    )
    assert answer.startswith(b"HTTP/1.1 400 ") and b"shorter than Content-Length" in answer
