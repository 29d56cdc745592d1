"""Every error code of the API reference maps to an exit code, a hint and one line of output.

The expected tables below are copied from the API reference (sections B.2 and B.3 of
volcengine-visual.md); when the reference is at hand (shared/ beside the repository),
a test checks that the copies still list exactly its codes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers_everyday import invoke

from volccli import codes
from volccli.client import parse_response
from volccli.errors import VolccliError
from volccli.sandbox import API_KEY, Sandbox
from volccli.ui import format_error

# Exit codes: auth 3, access/params 4, audit 5, rate 6, server 7.
# Gateway-layer codes (B.2): code -> (CodeN, HTTP status, exit code).
GATEWAY_EXPECTED: dict[str, tuple[int, int, int]] = {
    "MissingParameter": (100002, 400, 4),
    "MissingAuthenticationToken": (100003, 401, 3),
    "MissingRequestInfo": (100004, 400, 3),
    "MissingSignature": (100005, 401, 3),
    "InvalidTimestamp": (100006, 400, 3),
    "ServiceNotFound": (100007, 404, 3),
    "InvalidActionOrVersion": (100008, 404, 4),
    "InvalidAccessKey": (100009, 401, 3),
    "SignatureDoesNotMatch": (100010, 401, 3),
    "LackPolicy": (100012, 403, 4),
    "AccessDenied": (100013, 403, 4),
}
# Business codes (B.3, plus 50400 from its "also observed" list): code -> (message, exit code).
BUSINESS_EXPECTED: dict[int, tuple[str, int]] = {
    50400: ("Access Denied: Internal Error", 4),
    50411: ("Pre Img Risk Not Pass", 5),
    50511: ("Post Img Risk Not Pass", 5),
    50412: ("Text Risk Not Pass", 5),
    50512: ("Post Text Risk Not Pass", 5),
    50413: ("Post Text Risk Not Pass", 5),
    50513: ("Pre Video Risk Not Pass", 5),
    50514: ("Pre Audio Risk Not Pass", 5),
    50516: ("Post Video Risk Not Pass", 5),
    50517: ("Post Audio Risk Not Pass", 5),
    50518: ("Pre Img Risk Not Pass: Copyright", 5),
    50519: ("Post Img Risk Not Pass: Copyright", 5),
    50520: ("Risk Internal Error", 7),
    50521: ("Antidirt Internal Error", 7),
    50522: ("Image Copyright Internal Error", 7),
    50429: ("Request Has Reached API Limit, Please Try Later", 6),
    50430: ("Request Has Reached API Concurrent Limit, Please Try Later", 6),
    50500: ("Internal Error", 7),
    50501: ("Internal RPC Error", 7),
}
# A relay in front of the API: HTTP status -> exit code.
RELAY_EXPECTED: dict[int, int] = {
    400: 4,
    401: 3,
    402: 4,
    403: 4,
    404: 3,
    413: 4,
    429: 6,
    500: 7,
    502: 7,
    503: 7,
    504: 7,
}


def _reference() -> Path | None:
    repo = Path(__file__).resolve().parents[1]
    for candidate in (
        repo.parent / "shared" / "api" / "volcengine-visual.md",
        repo / "shared" / "api" / "volcengine-visual.md",
    ):
        if candidate.is_file():
            return candidate
    return None


def _section(text: str, start: str, end: str) -> str:
    head = text.index(start)
    return text[head : text.index(end, head + len(start))]


def _business_status(code: int) -> int:
    if code in (50429, 50430):
        return 429
    return 500 if code in (50500, 50501) else 400


def business_answer(code: int, message: str) -> tuple[int, bytes]:
    body = {
        "code": code,
        "data": None,
        "message": message,
        "request_id": "20240102030405ABCDEF",
        "status": code,
        "time_elapsed": "84.448µs",
    }
    return _business_status(code), json.dumps(body).encode()


def gateway_answer(name: str, code_n: int, status: int) -> tuple[int, bytes]:
    body = {
        "ResponseMetadata": {
            "RequestId": "20240102030405ABCDEF",
            "Action": "CVProcess",
            "Version": "2022-08-31",
            "Service": "cv",
            "Region": "cn-north-1",
            "Error": {"CodeN": code_n, "Code": name, "Message": f"The request failed: {name}."},
        }
    }
    return status, json.dumps(body).encode()


def relay_answer(status: int) -> tuple[int, bytes]:
    body = {"error": {"message": "something\nwent wrong", "type": "new_api_error", "code": "x"}}
    return status, json.dumps(body).encode()


def raised(status: int, content: bytes) -> VolccliError:
    with pytest.raises(VolccliError) as info:
        parse_response(status, content, {})
    return info.value


def assert_one_line(error: VolccliError, hint: str) -> str:
    line = format_error(error)
    assert "\n" not in line and "\r" not in line
    assert line.startswith("volccli: error: ")
    assert hint and line.endswith(f"; {' '.join(hint.split())}")
    return line


def test_the_expected_tables_list_exactly_the_references_codes() -> None:
    path = _reference()
    if path is None:
        pytest.skip("the API reference (shared/api/volcengine-visual.md) is not beside the repo")
    text = path.read_text(encoding="utf-8")
    b2 = _section(text, "### B.2", "### B.3")
    b3 = _section(text, "### B.3", "## C.")
    gateway_rows = re.findall(r"^\| ([A-Za-z]+) \| (\d+) \| (\d+) \|", b2, re.MULTILINE)
    assert {name: (int(n), int(http)) for name, n, http in gateway_rows} == {
        name: (code_n, status) for name, (code_n, status, _) in GATEWAY_EXPECTED.items()
    }
    business: set[int] = set()
    for row in re.findall(r"^\| \d{3} \| ([\d /]+) \|", b3, re.MULTILINE):
        business |= {int(code) for code in row.split("/")}
    business.discard(codes.SUCCESS)
    assert "`50400`" in b3  # listed as observed, not in the table
    assert business | {50400} == set(BUSINESS_EXPECTED)


@pytest.mark.parametrize("code", sorted(BUSINESS_EXPECTED))
def test_business_code_has_its_exit_code_hint_and_one_line(code: int) -> None:
    message, exit_code = BUSINESS_EXPECTED[code]
    info = codes.BUSINESS[code]  # present in the table, not the fallback
    assert info.hint.strip() and info.meaning.strip()
    error = raised(*business_answer(code, message))
    assert int(error.exit_code) == exit_code
    assert error.code == code
    line = assert_one_line(error, info.hint)
    assert str(code) in line and message in line


@pytest.mark.parametrize("name", sorted(GATEWAY_EXPECTED))
def test_gateway_code_has_its_exit_code_hint_and_one_line(name: str) -> None:
    code_n, status, exit_code = GATEWAY_EXPECTED[name]
    info = codes.GATEWAY[name]
    assert info.hint.strip() and info.meaning.strip()
    error = raised(*gateway_answer(name, code_n, status))
    assert int(error.exit_code) == exit_code
    assert error.code == name
    assert name in assert_one_line(error, info.hint)


@pytest.mark.parametrize("status", sorted(RELAY_EXPECTED))
def test_relay_status_has_its_exit_code_hint_and_one_line(status: int) -> None:
    info = codes.RELAY[status]
    assert info.hint.strip()
    error = raised(*relay_answer(status))
    assert int(error.exit_code) == RELAY_EXPECTED[status]
    assert f"HTTP {status}" in assert_one_line(error, info.hint)


@pytest.mark.parametrize("status", [*sorted(RELAY_EXPECTED), 405, 418, 501, 505])
@pytest.mark.parametrize("body", [b"<html>nginx</html>", b'{"error": "x"}'], ids=["html", "json"])
def test_in_official_mode_an_answer_outside_the_envelopes_never_blames_a_relay(
    status: int, body: bytes
) -> None:
    """With AK/SK there is no relay and no base URL: such an answer comes from whatever
    stands in front of the endpoint, or from a wrong --endpoint."""
    with pytest.raises(VolccliError) as info:
        parse_response(status, body, {}, mode="official")
    line = format_error(info.value)
    assert "relay" not in line and "base URL" not in line and "API key" not in line
    assert f"HTTP {status}" in line
    assert line.count(f"HTTP {status}") == 1
    gateway = raised(status, body)
    assert int(info.value.exit_code) == int(gateway.exit_code)  # same class of failure
    if status in (404, 405, 501):
        assert "check --endpoint" in line


@pytest.mark.parametrize("status", [405, 501])
def test_a_url_that_serves_no_post_is_a_configuration_error(status: int) -> None:
    error = raised(*relay_answer(status))
    assert int(error.exit_code) == 3 and error.retry == "never"
    assert "check the base URL" in format_error(error)


def test_the_hints_name_the_fix() -> None:
    hint_50400 = codes.BUSINESS[50400].hint
    assert "req_key" in hint_50400 and "not enabled" in hint_50400
    assert "prompt failed the content audit" in codes.BUSINESS[50412].meaning
    signature = codes.GATEWAY["SignatureDoesNotMatch"].hint
    assert "secret key" in signature and "clock" in signature
    assert "--qps" in codes.BUSINESS[50429].hint
    relay_401 = codes.RELAY[401].hint
    assert "API key" in relay_401 and "base URL" in relay_401


def test_unknown_codes_still_get_a_hint_and_a_class() -> None:
    assert int(raised(*business_answer(50588, "Something New")).exit_code) == 7
    assert int(raised(*business_answer(50777, "Something New")).exit_code) == 4
    assert codes.gateway("BrandNewError").hint
    assert int(raised(*gateway_answer("BrandNewError", 100999, 400)).exit_code) == 4


def test_an_unlisted_code_in_the_audit_block_is_a_refusal_not_a_server_error() -> None:
    error = raised(*business_answer(50515, "Post Something Risk Not Pass"))
    assert int(error.exit_code) == 5 and error.retry == "never"


@pytest.mark.parametrize(
    ("status", "exit_code", "retry"), [(429, 6, "safe"), (503, 7, "server"), (403, 4, "never")]
)
def test_an_unlisted_gateway_error_is_judged_by_its_http_status(
    status: int, exit_code: int, retry: str
) -> None:
    # The gateway's own rate-limit and internal error names are not documented.
    error = raised(*gateway_answer("RequestLimitExceeded", 100999, status))
    assert (int(error.exit_code), error.retry) == (exit_code, retry)
    assert "RequestLimitExceeded" in error.message


@pytest.mark.parametrize("name", sorted(GATEWAY_EXPECTED))
def test_a_gateway_error_with_only_its_number_is_recognised(name: str) -> None:
    code_n, status, exit_code = GATEWAY_EXPECTED[name]
    body = {"ResponseMetadata": {"RequestId": "r1", "Error": {"CodeN": code_n}}}
    error = raised(status, json.dumps(body).encode())
    assert int(error.exit_code) == exit_code
    assert error.message.startswith(f"{name}: ") and error.code == name
    assert error.hint == codes.GATEWAY[name].hint


@pytest.mark.parametrize(
    ("marker", "exit_code", "words"),
    [
        ("50400", 4, "not enabled"),
        ("50412", 5, "prompt failed the content audit"),
        ("50429", 6, "--qps"),
        ("50500", 7, "retry later"),
        ("401relay", 3, "base URL"),
    ],
)
def test_the_cli_prints_exactly_one_line_per_error(
    marker: str,
    exit_code: int,
    words: str,
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLCCLI_API_KEY", API_KEY)
    run = invoke(
        [
            "--base-url",
            fresh_sandbox.base_url,
            "--retries",
            "0",
            "txt2img",
            f"a cat volccli-fault:{marker}",
            "-o",
            tmp_path,
        ],
        capsys,
    )
    assert run.code == exit_code
    assert run.out == ""
    assert len(run.err_lines) == 1, run.err
    assert run.err_lines[0].startswith("volccli: error: ") and words in run.err_lines[0]
    assert list(tmp_path.iterdir()) == []
