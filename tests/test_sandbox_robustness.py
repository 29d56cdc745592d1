"""The sandbox under bad requests: malformed URLs, text that does not encode, deep JSON,
odd value types. Whatever arrives, it answers (never a dropped connection unless a fault
asked for one), a bad request gets the service's 50215 naming the field, never a 50500
with a traceback, and the stats keep working."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from volccli.sandbox import API_KEY, Sandbox, SandboxConfig
from volccli.sandbox.jsonbody import MAX_DEPTH, NotJson, clean_text, loads
from volccli.sandbox.responses import to_json

TXT2IMG = "high_aes_general_v14"
EDIT = "byteedit_v2.0"
OUTPAINT = "i2i_outpainting"
PRODUCT = "img2img_e_commerce_style"
CONTROLNET = "high_aes_scheduler_svr_controlnet_v2.0"
GENERIC = "jimeng_i2i_v30"
VERSION = "2022-08-31"
CANCEL_VERSION = "2024-06-06"
INVALID = "Input invalid for this service."


def png_b64(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


IMAGE = png_b64(48, 32)
# One valid body per kind; the cases below spoil one field at a time.
BODIES: dict[str, dict[str, Any]] = {
    "txt2img": {
        "req_key": TXT2IMG,
        "prompt": "p",
        "width": 256,
        "height": 256,
        "seed": 3,
        "logo_info": {"add_logo": True, "position": 1, "opacity": 0.5, "logo_text_content": "t"},
    },
    # Both arrays: the URL is checked, the small base64 image sizes the result.
    "edit": {
        "req_key": EDIT,
        "prompt": "p",
        "seed": 3,
        "image_urls": ["http://example.com/a.png"],
        "binary_data_base64": [IMAGE],
    },
    "outpaint": {
        "req_key": OUTPAINT,
        "prompt": "p",
        "custom_prompt": "p",
        "seed": 3,
        "top": 0.1,
        "binary_data_base64": [IMAGE],
    },
    "product": {
        "req_key": PRODUCT,
        "binary_data_base64": [IMAGE],
        "product_image_input": "uri://binary_data?index=0",
        "ref_image_input": "http://example.com/ref.png",
        "mask_image_input": "http://example.com/mask.png",
        "longer_side": 64,
        "seed": 3,
    },
    "controlnet": {
        "req_key": CONTROLNET,
        "prompt": "p",
        "seed": 3,
        "binary_data_base64": [IMAGE],
        "controlnet_args": [{"type": "depth", "binary_data_index": 0, "strength": 0.5}],
    },
    "generic": {
        "req_key": GENERIC,
        "prompt": "p",
        "seed": 3,
        "image_urls": ["http://example.com/a.png"],
        "binary_data_base64": [IMAGE],
    },
}


def post(
    sb: Sandbox,
    body: Any,
    action: str = "CVProcess",
    version: str = VERSION,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST ``body`` (bytes as they are, anything else as JSON) to the gateway path."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (session or requests).post(
        f"{sb.base_url}/volcv/v1?Action={action}&Version={version}",
        data=data,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=20,
    )


def refusal(response: requests.Response) -> tuple[int, int, str]:
    payload = response.json()
    assert payload["data"] is None, payload
    return response.status_code, payload["code"], payload["message"]


def ok_data(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:300]
    payload = response.json()
    assert payload["code"] == 10000, payload
    return payload["data"]


def stats(sb: Sandbox) -> dict[str, Any]:
    """``GET /__sandbox/stats`` over HTTP, as a client reads it."""
    response = requests.get(f"{sb.base_url}/__sandbox/stats", timeout=10)
    assert response.status_code == 200
    return response.json()


def assert_no_crash(sb: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    """No request answered 50500 and nothing was printed on stderr."""
    for action, counts in stats(sb)["requests"].items():
        assert "50500" not in counts, (action, counts)
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def sb(fresh_sandbox: Sandbox, capfd: pytest.CaptureFixture[str]) -> Iterator[Sandbox]:
    capfd.readouterr()  # only what this test causes counts
    yield fresh_sandbox
    assert_no_crash(fresh_sandbox, capfd)


# --- malformed image URLs ------------------------------------------------------------------

BAD_URLS = [
    ("http://[::1/a.png", "is not a valid URL"),
    ("http://127.0.0.1:abc/a.png", "is not a valid URL"),
    ("http://localhost:99999/a.png", "is not a valid URL"),
    ("http://[::1]:x/a.png", "is not a valid URL"),
    ("http://\u2100/a.png", "is not a valid URL"),
    ("http://127.0.0.1/a\n.png", "is not a valid URL: it contains a control character"),
    ("http://127.0.0.1/a\x00.png", "is not a valid URL: it contains a control character"),
    ("http:///a.png", "must be an http(s) URL"),
]
URL_FIELDS = [
    ({"req_key": EDIT, "prompt": "p"}, "image_urls", True),
    ({"req_key": OUTPAINT, "top": 0.2}, "image_urls", True),
    (
        {
            "req_key": CONTROLNET,
            "prompt": "p",
            "controlnet_args": [{"type": "canny", "binary_data_index": 0}],
        },
        "image_urls",
        True,
    ),
    ({"req_key": GENERIC, "prompt": "p"}, "image_urls", True),
    (BODIES["product"], "product_image_input", False),
    (BODIES["product"], "ref_image_input", False),
    (BODIES["product"], "mask_image_input", False),
    ({**BODIES["product"], "upload_light_switch": True}, "light_image_input", False),
]


@pytest.mark.parametrize(("url", "problem"), BAD_URLS, ids=[case[0] for case in BAD_URLS])
@pytest.mark.parametrize(
    ("base", "field", "array"),
    URL_FIELDS,
    ids=[f"{case[0]['req_key']}-{case[1]}" for case in URL_FIELDS],
)
@pytest.mark.parametrize("action", ["CVProcess", "CVSync2AsyncSubmitTask"])
def test_a_malformed_url_is_invalid_input_naming_the_field(
    sb: Sandbox,
    base: dict[str, Any],
    field: str,
    array: bool,
    url: str,
    problem: str,
    action: str,
) -> None:
    body = {**base, field: [url] if array else url}
    status, code, text = refusal(post(sb, body, action))
    where = f"{field}[0]" if array else field
    assert (status, code) == (400, 50215)
    assert text.startswith(f"Input invalid for this service: {where}: {problem}"), text


def test_a_loopback_server_that_answers_garbage_is_a_failed_download(sb: Sandbox) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            # Read the sandbox's download request, answer with something that is not HTTP.
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-not-http\r\n\r\n")

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        body = {"req_key": EDIT, "prompt": "p", "image_urls": [f"http://127.0.0.1:{port}/a"]}
        status, code, text = refusal(post(sb, body))
        server.join(timeout=5)
    assert (status, code) == (400, 50215)
    assert text.startswith("Input invalid for this service: image_urls[0]: could not download")


# --- text that does not encode ---------------------------------------------------------------


def test_a_lone_surrogate_in_the_prompt_is_read_as_the_replacement_character(
    sb: Sandbox,
) -> None:
    raw = (
        b'{"req_key":"high_aes_general_v14","prompt":"cat \\ud800",'
        b'"seed":5,"width":256,"height":256}'
    )
    odd = ok_data(post(sb, raw))
    replaced = ok_data(
        post(
            sb, {"req_key": TXT2IMG, "prompt": "cat \ufffd", "seed": 5, "width": 256, "height": 256}
        )
    )
    # The same picture and extras as for U+FFFD: the service goes on with that character.
    assert odd["binary_data_base64"] == replaced["binary_data_base64"]
    assert odd["rephraser_result"] == replaced["rephraser_result"]
    assert odd["rephraser_result"].startswith("cat \ufffd")
    recent = stats(sb)["recent"]
    assert recent[0]["body"]["prompt"] == "cat \ufffd"
    assert [entry["outcome"] for entry in recent] == ["ok", "ok"]


SURROGATE_BODIES = [
    ("unknown field", b'{"req_key":"high_aes_general_v14","prompt":"x","junk":"\\ud800"}', 200),
    ("key", b'{"req_key":"high_aes_general_v14","prompt":"x","\\udfff":1}', 200),
    (
        "nested",
        b'{"req_key":"high_aes_general_v14","prompt":"x","logo_info":{"add_logo":true,'
        b'"logo_text_content":"\\ud800\\ud800"}}',
        200,
    ),
    ("pair halves reversed", b'{"req_key":"high_aes_general_v14","prompt":"\\ude00\\ud83d"}', 200),
    ("image", b'{"req_key":"byteedit_v2.0","prompt":"x","binary_data_base64":["\\ud800"]}', 400),
    (
        "images not an array",
        b'{"req_key":"byteedit_v2.0","prompt":"x","binary_data_base64":"\\ud800"}',
        400,
    ),
    ("req_key", b'{"req_key":"\\ud800","prompt":"x"}', 400),
    ("light position", b'{"req_key":"img2img_e_commerce_style","light_position":"\\ud800"}', 400),
    ("generic key", b'{"req_key":"jimeng_i2i_v30","\\ud800":["uri://binary_data?index=3"]}', 400),
]


@pytest.mark.parametrize(
    ("raw", "status"),
    [case[1:] for case in SURROGATE_BODIES],
    ids=[case[0] for case in SURROGATE_BODIES],
)
@pytest.mark.parametrize("action", ["CVProcess", "CVSync2AsyncSubmitTask"])
def test_lone_surrogates_anywhere_never_break_the_answer_or_the_stats(
    sb: Sandbox, raw: bytes, status: int, action: str
) -> None:
    response = post(sb, raw, action)
    assert response.status_code == status, response.text[:300]
    response.content.decode("utf-8")  # strict: the answer is valid UTF-8
    # Stats survive, and still do after more requests.
    recent = stats(sb)["recent"]
    (entry,) = recent
    # The text is recorded with U+FFFD, or (an image) summarised by a hash of it.
    shown = json.dumps(entry["body"], ensure_ascii=False)
    assert "\ufffd" in shown or "<base64 1 bytes sha256=" in shown
    ok_data(post(sb, {"req_key": TXT2IMG, "prompt": "after"}))
    assert len(stats(sb)["recent"]) == 2


def test_a_surrogate_in_get_result_req_json_is_replaced(sb: Sandbox) -> None:
    sb.configure(async_polls=0)
    task_id = ok_data(post(sb, {"req_key": TXT2IMG, "prompt": "a"}, "CVSync2AsyncSubmitTask"))[
        "task_id"
    ]
    req_json = '{"logo_info":{"add_logo":true,"logo_text_content":"\\ud800"}}'
    body = {"req_key": TXT2IMG, "task_id": task_id, "req_json": req_json}
    assert ok_data(post(sb, body, "CVSync2AsyncGetResult"))["status"] == "done"
    assert stats(sb)["requests"]["CVSync2AsyncGetResult"] == {"ok": 1}


def test_utf8_encoded_surrogates_are_not_utf8(sb: Sandbox) -> None:
    # The bytes ED A0 80 would be U+D800 in UTF-8, which UTF-8 forbids.
    raw = b'{"req_key":"high_aes_general_v14","prompt":"\xed\xa0\x80"}'
    assert refusal(post(sb, raw)) == (400, 50215, INVALID)
    assert stats(sb)["recent"][0]["body"].startswith('{"req_key"')


# --- deep JSON ---------------------------------------------------------------------------------

DEEP = 100_000


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"req_key":"high_aes_general_v14","prompt":"x","a":' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b"[" * DEEP,  # never closed
    ],
    ids=["array", "inside a valid body", "objects", "unclosed"],
)
@pytest.mark.parametrize("action", ["CVProcess", "CVSync2AsyncSubmitTask", "CVSync2AsyncGetResult"])
def test_deeply_nested_json_is_invalid_input(sb: Sandbox, raw: bytes, action: str) -> None:
    assert refusal(post(sb, raw, action)) == (400, 50215, INVALID)
    (entry,) = stats(sb)["recent"]
    assert entry["outcome"] == "50215"
    assert entry["body"].endswith(f"... ({len(raw)} bytes)")


def _nested(depth: int) -> Any:
    """``depth`` levels of arrays around a number."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_up_to_the_limit_is_read_and_recorded(sb: Sandbox) -> None:
    # The body object is one level, so the extra field may nest MAX_DEPTH - 1 deep.
    body = {"req_key": TXT2IMG, "prompt": "x", "extra": _nested(MAX_DEPTH - 1)}
    ok_data(post(sb, body))
    assert refusal(post(sb, {**body, "extra": _nested(MAX_DEPTH)})) == (400, 50215, INVALID)
    recent = stats(sb)["recent"]
    assert recent[0]["body"]["extra"] == _nested(MAX_DEPTH - 1)
    assert isinstance(recent[1]["body"], str)


def test_a_deep_req_json_is_invalid_input_naming_it(sb: Sandbox) -> None:
    task_id = ok_data(post(sb, {"req_key": TXT2IMG, "prompt": "a"}, "CVSync2AsyncSubmitTask"))[
        "task_id"
    ]
    body = {"req_key": TXT2IMG, "task_id": task_id, "req_json": "[" * DEEP + "]" * DEEP}
    status, code, text = refusal(post(sb, body, "CVSync2AsyncGetResult"))
    assert (status, code) == (400, 50215)
    assert text == "Input invalid for this service: req_json: is not valid JSON"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"req_key":"high_aes_general_v14","prompt":"x","scale":NaN}',
        b'{"req_key":"high_aes_general_v14","prompt":"x","scale":-Infinity}',
        b'{"req_key":"high_aes_general_v14","prompt":"x","scale":1e999}',
        b'{"req_key":"high_aes_general_v14","prompt":"x","seed":1' + b"0" * 400 + b"}",
        b'{"req_key":"high_aes_general_v14","prompt":"x","seed":1' + b"0" * 5000 + b"}",
    ],
    ids=["NaN", "Infinity", "beyond float64", "integer beyond float64", "5000 digits"],
)
def test_numbers_the_service_cannot_decode_are_invalid_input(sb: Sandbox, raw: bytes) -> None:
    assert refusal(post(sb, raw)) == (400, 50215, INVALID)


# --- req_key, results, cancel ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "version"),
    [
        ("CVProcess", VERSION),
        ("CVSync2AsyncSubmitTask", VERSION),
        ("CVSync2AsyncGetResult", VERSION),
        ("CVCancelTask", CANCEL_VERSION),
    ],
)
def test_an_unknown_req_key_is_access_denied_for_every_action(
    sb: Sandbox, action: str, version: str
) -> None:
    body = {"req_key": "not_enabled_v1", "prompt": "x", "task_id": "1234567890123456789"}
    assert refusal(post(sb, body, action, version)) == (400, 50400, "Access Denied: Internal Error")


def test_an_extra_req_key_is_served_by_get_result_and_cancel(sb: Sandbox) -> None:
    sb.configure(extra_req_keys=["my_key_v1"])
    for action, version in (("CVSync2AsyncGetResult", VERSION), ("CVCancelTask", CANCEL_VERSION)):
        body = {"req_key": "my_key_v1", "task_id": "1234567890123456789"}
        assert ok_data(post(sb, body, action, version))["status"] == "not_found"


# Reference B.1 and C.1-C.5: which fields each kind's ``data`` carries.
COMMON_DATA = {"algorithm_base_resp", "binary_data_base64", "image_urls", "request_id"}
KIND_DATA = {
    "txt2img": {"rephraser_result", "predict_tags_result"},
    "controlnet": {"rephraser_result", "predict_tags_result"},
    "edit": {"infer_ctx", "vlm_result"},
    "outpaint": set(),
    "product": set(),
}
SPECIFIC = set().union(*KIND_DATA.values())


@pytest.mark.parametrize("kind", sorted(KIND_DATA))
def test_each_kind_answers_with_the_fields_the_reference_lists(sb: Sandbox, kind: str) -> None:
    data = ok_data(post(sb, BODIES[kind]))
    assert set(data) >= COMMON_DATA
    assert set(data) & SPECIFIC == KIND_DATA[kind]
    if "predict_tags_result" in data:
        tags = json.loads(data["predict_tags_result"])
        assert tags and all(set(tag) == {"tag", "prob"} for tag in tags)


def test_controlnet_tags_can_be_switched_off_like_txt2img(sb: Sandbox) -> None:
    data = ok_data(
        post(sb, {**BODIES["controlnet"], "use_predict_tags": False, "use_rephraser": False})
    )
    assert "predict_tags_result" not in data and "rephraser_result" not in data


def _cancel(sb: Sandbox, req_key: str, task_id: str) -> requests.Response:
    return post(sb, {"req_key": req_key, "task_id": task_id}, "CVCancelTask", CANCEL_VERSION)


def _poll(sb: Sandbox, req_key: str, task_id: str) -> str:
    body = {"req_key": req_key, "task_id": task_id}
    return ok_data(post(sb, body, "CVSync2AsyncGetResult"))["status"]


def test_a_cancelled_task_is_not_found_by_a_poll_or_a_second_cancel(sb: Sandbox) -> None:
    task_id = ok_data(post(sb, {"req_key": TXT2IMG, "prompt": "c"}, "CVSync2AsyncSubmitTask"))[
        "task_id"
    ]
    assert ok_data(_cancel(sb, TXT2IMG, task_id)) == {"task_id": task_id, "status": "cancelled"}
    again = ok_data(_cancel(sb, TXT2IMG, task_id))
    assert again["status"] == "not_found"
    assert _poll(sb, TXT2IMG, task_id) == "not_found"


def test_cancel_with_another_req_key_leaves_the_task_alone(sb: Sandbox) -> None:
    task_id = ok_data(post(sb, {"req_key": TXT2IMG, "prompt": "c"}, "CVSync2AsyncSubmitTask"))[
        "task_id"
    ]
    assert ok_data(_cancel(sb, EDIT, task_id))["status"] == "not_found"
    assert _poll(sb, TXT2IMG, task_id) == "in_queue"


def test_cancel_of_an_expired_task_says_expired_like_a_poll(sb: Sandbox) -> None:
    task_id = ok_data(post(sb, {"req_key": TXT2IMG, "prompt": "c"}, "CVSync2AsyncSubmitTask"))[
        "task_id"
    ]
    sb.configure(task_ttl=0.05)
    time.sleep(0.1)
    assert ok_data(_cancel(sb, TXT2IMG, task_id))["status"] == "expired"
    assert _poll(sb, TXT2IMG, task_id) == "expired"


@pytest.mark.parametrize("value", [7, True, ["p"], {"text": "p"}])
def test_outpaint_custom_prompt_must_be_a_string(sb: Sandbox, value: object) -> None:
    status, code, text = refusal(post(sb, {**BODIES["outpaint"], "custom_prompt": value}))
    assert (status, code) == (400, 50215)
    assert text.startswith("Input invalid for this service: custom_prompt: must be a string")


def test_outpaint_custom_prompt_alone_is_the_prompt(sb: Sandbox) -> None:
    body = {k: v for k, v in BODIES["outpaint"].items() if k != "prompt"}
    ok_data(post(sb, {**body, "custom_prompt": "a garden", "seed": 4}))
    same = ok_data(post(sb, {**body, "custom_prompt": "a garden", "seed": 4}))
    other = ok_data(post(sb, {**body, "custom_prompt": "a lake", "seed": 4}))
    assert same["binary_data_base64"] != other["binary_data_base64"]


# --- odd values anywhere: a quick fuzz ----------------------------------------------------------

# Each stands for a family: wrong JSON types, numbers far out of range, text that does not
# encode, URLs that do not parse, references to images that are not there.
ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    10**30,
    1e300,
    "",
    "\ud800",
    [None],
    {"a": [1]},
    "http://[::1/a.png",
    "http://127.0.0.1:abc/a.png",
    "uri://binary_data?index=99999999999999999999",
    "x" * 3000,
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def test_any_field_with_any_odd_value_is_answered_without_a_crash(sb: Sandbox) -> None:
    answered: dict[int, int] = {}
    with requests.Session() as session:
        for body in BODIES.values():
            for path in [*_paths(body), ("unknown",)]:
                for value in ODD_VALUES:
                    response = post(sb, _replaced(body, path, value), session=session)
                    answered[response.status_code] = answered.get(response.status_code, 0) + 1
                    assert response.status_code in (200, 400), (path, value, response.text)
                    response.content.decode("utf-8")
    assert answered[200] and answered[400]  # both kinds of answer were exercised
    assert stats(sb)["requests"]["CVProcess"].keys() <= {"ok", "50215", "50400"}


# --- the HTTP side ----------------------------------------------------------------------------


def _raw(sandbox: Sandbox, data: bytes) -> bytes:
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while piece := conn.recv(65536):
            answer += piece
    return answer


@pytest.mark.parametrize("size", [b"-1", b"+5", b"0x5", b"1_0", b" "])
def test_a_chunk_size_that_is_not_hex_is_400(sb: Sandbox, size: bytes) -> None:
    head = (
        f"POST /volcv/v1?Action=CVProcess&Version={VERSION} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    host, port = sb.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        # The client keeps its side open: the answer must come without waiting for EOF.
        conn.sendall(head + size + b"\r\nhello\r\n")
        answer = b""
        while b"bad chunked encoding" not in answer and (piece := conn.recv(65536)):
            answer += piece
    assert answer.startswith(b"HTTP/1.1 400 ") and b"bad chunked encoding" in answer


@pytest.mark.parametrize(
    "raw",
    [b'{"self": 1}', b"[" * DEEP, b'{"latency": NaN}', b'{"api_key": "\\ud800"}'],
    ids=["self", "deep", "NaN", "surrogate"],
)
def test_control_config_answers_odd_bodies(sb: Sandbox, raw: bytes) -> None:
    answer = _raw(
        sb,
        b"POST /__sandbox/config HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(raw)).encode()
        + b"\r\n\r\n"
        + raw,
    )
    status = answer.split(b" ", 2)[1]
    assert status in (b"200", b"400"), answer[:200]
    stats(sb)


def test_a_bookkeeping_failure_still_answers(capfd: pytest.CaptureFixture[str]) -> None:
    with Sandbox(SandboxConfig(host="127.0.0.1", port=0)) as box:

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("stats are broken")

        box.engine.stats.record = broken  # type: ignore[method-assign]
        ok_data(post(box, {"req_key": TXT2IMG, "prompt": "x"}))
    assert "RuntimeError: stats are broken" in capfd.readouterr().err


# --- jsonbody: pure functions ---------------------------------------------------------------


def test_loads_replaces_lone_surrogates_everywhere() -> None:
    value = loads(b'{"\\ud800k": ["a\\udc00", {"b": "\\ud83d\\ude00"}]}')
    assert value == {"\ufffdk": ["a\ufffd", {"b": "\U0001f600"}]}
    assert loads('"\ud800"') == "\ufffd"  # str input may hold one directly
    assert to_json(value).decode("utf-8")


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b'"\xed\xa0\x80"', b"NaN", b"1e400", b"[" * 5000 + b"]" * 5000, b"{"],
)
def test_loads_refuses_what_the_service_cannot_decode(raw: bytes) -> None:
    with pytest.raises(NotJson):
        loads(raw)


def test_loads_depth_limit_is_exact() -> None:
    assert loads(json.dumps(_nested(MAX_DEPTH))) == _nested(MAX_DEPTH)
    with pytest.raises(NotJson, match="nested more than"):
        loads(json.dumps(_nested(MAX_DEPTH + 1)))


def test_to_json_never_fails_on_text_that_does_not_encode() -> None:
    assert json.loads(to_json({"\ud800": ["x\udfff"]})) == {"\ufffd": ["x\ufffd"]}
    assert clean_text("ok") == "ok"
