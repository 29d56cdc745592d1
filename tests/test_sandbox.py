"""The sandbox against real HTTP on 127.0.0.1: auth, routes, the five kinds, validation,
results, async tasks and stats. Faults and markers are in test_sandbox_faults.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from PIL import Image

from volccli.auth import V4Auth
from volccli.sandbox import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, Sandbox
from volccli.sandbox.responses import go_duration

TXT2IMG = "high_aes_general_v14"
EDIT = "byteedit_v2.0"
OUTPAINT = "i2i_outpainting"
PRODUCT = "img2img_e_commerce_style"
CONTROLNET = "high_aes_scheduler_svr_controlnet_v2.0"
VERSION = "2022-08-31"


# --- helpers ----------------------------------------------------------------------------

def png_b64(width: int, height: int, fmt: str = "PNG",
            colour: tuple[int, int, int] = (9, 99, 199)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format=fmt)
    return base64.b64encode(out.getvalue()).decode()


def gateway(sb: Sandbox, body: Any, action: str = "CVProcess", version: str = VERSION,
            key: str | None = API_KEY, headers: dict[str, str] | None = None,
            timeout: float = 10) -> requests.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent.setdefault("Content-Type", "application/json")
    return requests.post(f"{sb.base_url}/volcv/v1?Action={action}&Version={version}",
                         data=data, headers=sent, timeout=timeout)


def official(sb: Sandbox, body: Any, action: str = "CVProcess", version: str = VERSION,
             auth: V4Auth | None = None, tamper: dict[str, str] | None = None,
             send: bytes | None = None) -> requests.Response:
    """Sign ``body`` with V4 and post it (``send`` replaces the bytes after signing)."""
    url = f"{sb.base_url}/?Action={action}&Version={version}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    signer = auth or V4Auth(ACCESS_KEY, SECRET_KEY)
    headers = signer.headers("POST", url, hashlib.sha256(data).hexdigest())
    headers.update(tamper or {})
    return requests.post(url, data=send if send is not None else data, headers=headers,
                         timeout=10)


def ok_data(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:500]
    payload = response.json()
    assert payload["code"] == 10000, payload
    return payload["data"]


def result_size(data: dict[str, Any]) -> tuple[int, int]:
    (image,) = data["binary_data_base64"]
    with Image.open(io.BytesIO(base64.b64decode(image, validate=True))) as decoded:
        assert decoded.format == "PNG"
        decoded.load()
        return decoded.size


def error_of(response: requests.Response) -> tuple[int, int, str]:
    payload = response.json()
    assert payload["data"] is None
    return response.status_code, payload["code"], payload["message"]


def gateway_error(response: requests.Response) -> tuple[int, int, str, str]:
    error = response.json()["ResponseMetadata"]["Error"]
    return response.status_code, error["CodeN"], error["Code"], error["Message"]


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A loopback HTTP server with one 320x200 PNG at /img.png (404 elsewhere)."""
    data = base64.b64decode(png_b64(320, 200))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/img.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.send_error(404)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- envelope and gateway auth ---------------------------------------------------------

def test_bearer_success_envelope(fresh_sandbox: Sandbox) -> None:
    response = gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "a red bicycle"})
    payload = response.json()
    assert response.status_code == 200
    assert payload["code"] == payload["status"] == 10000
    assert payload["message"] == "Success"
    assert re.fullmatch(r"\d{14}[0-9A-F]{12}", payload["request_id"])
    assert re.fullmatch(r"\d+(\.\d+)?(ns|µs|ms|s)", payload["time_elapsed"])
    data = payload["data"]
    assert data["algorithm_base_resp"] == {"status_code": 0, "status_message": "Success"}
    assert data["image_urls"] is None
    assert 0 <= data["seed"] <= 2**31 - 1
    assert result_size(data) == (512, 512)


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_bearer_wrong_or_missing_key_is_a_relay_401(fresh_sandbox: Sandbox,
                                                     key: str | None) -> None:
    response = gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "x"}, key=key)
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "invalid token", "type": "new_api_error",
                                         "code": "invalid_api_key"}}
    assert fresh_sandbox.stats()["requests"]["CVProcess"] == {"auth_failed": 1}


@pytest.mark.parametrize("style", ["gateway", "official"])
def test_unknown_action_or_version(fresh_sandbox: Sandbox, style: str) -> None:
    send = gateway if style == "gateway" else official
    for action, version in [("CVMagic", VERSION), ("CVProcess", "2020-01-01"),
                            ("CVCancelTask", VERSION)]:
        response = send(fresh_sandbox, {"req_key": TXT2IMG}, action=action, version=version)
        status, code_n, code, _ = gateway_error(response)
        assert (status, code_n, code) == (404, 100008, "InvalidActionOrVersion")
        metadata = response.json()["ResponseMetadata"]
        assert metadata["Action"] == action and metadata["Version"] == version
        assert metadata["Service"] == "cv" and metadata["Region"] == "cn-north-1"


def test_missing_action_is_missing_parameter(fresh_sandbox: Sandbox) -> None:
    response = requests.post(f"{fresh_sandbox.base_url}/volcv/v1", json={},
                             headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert gateway_error(response)[:3] == (400, 100002, "MissingParameter")


# --- V4 signatures ----------------------------------------------------------------------

BODY = {"req_key": TXT2IMG, "prompt": "a cat", "width": 256, "height": 256}


def test_v4_signed_request_succeeds(fresh_sandbox: Sandbox) -> None:
    assert result_size(ok_data(official(fresh_sandbox, BODY))) == (256, 256)
    assert fresh_sandbox.stats()["recent"][-1]["auth"] == "v4"


def test_v4_with_session_token(fresh_sandbox: Sandbox) -> None:
    ok_data(official(fresh_sandbox, BODY, auth=V4Auth(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)))
    wrong = official(fresh_sandbox, BODY, auth=V4Auth(ACCESS_KEY, SECRET_KEY, "other-token"))
    assert gateway_error(wrong)[:3] == (401, 100009, "InvalidAccessKey")
    # The right token, but added after signing: not covered by the signature.
    unsigned = official(fresh_sandbox, BODY, tamper={"X-Security-Token": SESSION_TOKEN})
    assert gateway_error(unsigned)[:3] == (401, 100009, "InvalidAccessKey")


def test_v4_refusals(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    good = V4Auth(ACCESS_KEY, SECRET_KEY).headers(
        "POST", f"{sb.base_url}/?Action=CVProcess&Version={VERSION}",
        hashlib.sha256(json.dumps(BODY).encode()).hexdigest())
    bad_sig = re.sub(r"Signature=[0-9a-f]{6}", "Signature=000000", good["Authorization"])
    cases = {
        "wrong secret": (official(sb, BODY, auth=V4Auth(ACCESS_KEY, "not-the-secret")),
                         (401, 100010, "SignatureDoesNotMatch")),
        "bad signature": (official(sb, BODY, tamper={"Authorization": bad_sig}),
                          (401, 100010, "SignatureDoesNotMatch")),
        "unknown access key": (official(sb, BODY, auth=V4Auth("AKLTsomeoneElse", SECRET_KEY)),
                               (401, 100009, "InvalidAccessKey")),
        "no authorization": (official(sb, BODY, tamper={"Authorization": ""}),
                             (401, 100003, "MissingAuthenticationToken")),
        "bearer on the official route": (
            official(sb, BODY, tamper={"Authorization": f"Bearer {API_KEY}"}),
            (401, 100005, "MissingSignature")),
        "other region": (official(sb, BODY, auth=V4Auth(ACCESS_KEY, SECRET_KEY,
                                                          region="cn-beijing")),
                         (400, 100004, "MissingRequestInfo")),
        "other service": (official(sb, BODY, auth=V4Auth(ACCESS_KEY, SECRET_KEY, service="iam")),
                          (404, 100007, "ServiceNotFound")),
        "host changed after signing": (official(sb, BODY, tamper={"Host": "example.com"}),
                                       (401, 100010, "SignatureDoesNotMatch")),
    }
    for name, (response, expected) in cases.items():
        assert gateway_error(response)[:3] == expected, name


def test_v4_skewed_clock_is_invalid_timestamp(fresh_sandbox: Sandbox) -> None:
    past = datetime.now(timezone.utc) - timedelta(minutes=20)
    response = official(fresh_sandbox, BODY,
                        auth=V4Auth(ACCESS_KEY, SECRET_KEY, clock=lambda: past))
    assert gateway_error(response)[:3] == (400, 100006, "InvalidTimestamp")
    # Within the allowed skew it passes.
    recent = datetime.now(timezone.utc) - timedelta(minutes=5)
    ok_data(official(fresh_sandbox, BODY, auth=V4Auth(ACCESS_KEY, SECRET_KEY,
                                                       clock=lambda: recent)))


def test_v4_body_hash_mismatch(fresh_sandbox: Sandbox) -> None:
    sent = json.dumps({**BODY, "prompt": "a dog"}).encode()
    response = official(fresh_sandbox, BODY, send=sent)
    status, code_n, code, text = gateway_error(response)
    assert (status, code_n, code) == (401, 100010, "SignatureDoesNotMatch")
    assert "body hash does not match" in text
    missing = official(fresh_sandbox, BODY, tamper={"X-Content-Sha256": ""})
    assert "body hash does not match" in gateway_error(missing)[3]


def test_official_sdk_is_accepted(fresh_sandbox: Sandbox) -> None:
    from volcengine.visual.VisualService import VisualService

    service = VisualService()
    service.set_ak(ACCESS_KEY)
    service.set_sk(SECRET_KEY)
    service.set_host(fresh_sandbox.address)
    service.set_scheme("http")
    result = service.cv_process({"req_key": TXT2IMG, "prompt": "sdk", "width": 256,
                                 "height": 384, "seed": 42})
    assert result["code"] == 10000 and result["data"]["seed"] == 42
    assert result_size(result["data"]) == (256, 384)
    task = service.cv_sync2async_submit_task({"req_key": TXT2IMG, "prompt": "sdk async"})
    task_id = task["data"]["task_id"]
    statuses = [service.cv_sync2async_get_result(
        {"req_key": TXT2IMG, "task_id": task_id, "req_json": '{"return_url": true}'}
    )["data"]["status"] for _ in range(3)]
    assert statuses == ["in_queue", "generating", "done"]
    recent = fresh_sandbox.stats()["recent"]
    assert recent[0]["headers"]["User-Agent"].startswith("volc-sdk-python")
    assert all(entry["outcome"] == "ok" for entry in recent)


# --- the five kinds: results of the right size -----------------------------------------

def test_txt2img_size_and_extras(fresh_sandbox: Sandbox) -> None:
    data = ok_data(gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "a fox",
                                           "width": 768, "height": 256, "seed": 7}))
    assert result_size(data) == (768, 256)
    assert data["seed"] == 7
    assert data["rephraser_result"].startswith("a fox")
    assert json.loads(data["predict_tags_result"])
    plain = ok_data(gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "a fox",
                                            "use_rephraser": False, "use_predict_tags": False}))
    assert "rephraser_result" not in plain and "predict_tags_result" not in plain


def test_results_are_deterministic_per_seed(fresh_sandbox: Sandbox) -> None:
    body = {"req_key": TXT2IMG, "prompt": "same", "width": 256, "height": 256, "seed": 5}
    first = ok_data(gateway(fresh_sandbox, body))["binary_data_base64"]
    again = ok_data(gateway(fresh_sandbox, body))["binary_data_base64"]
    other = ok_data(gateway(fresh_sandbox, {**body, "seed": 6}))["binary_data_base64"]
    assert first == again != other
    drawn = {ok_data(gateway(fresh_sandbox, {**body, "seed": -1}))["seed"] for _ in range(3)}
    assert len(drawn) == 3  # -1 draws a fresh seed each time


def test_edit_sizes(fresh_sandbox: Sandbox, image_server: str) -> None:
    sb = fresh_sandbox
    data = ok_data(gateway(sb, {"req_key": EDIT, "prompt": "red",
                                "binary_data_base64": [png_b64(300, 200, "JPEG")]}))
    assert result_size(data) == (300, 200)
    assert set(data["infer_ctx"]) >= {"algorithm_key", "app_key", "created_at", "generate_id",
                                      "log_id"}
    assert data["vlm_result"] == ""
    fetched = ok_data(gateway(sb, {"req_key": EDIT, "prompt": "x",
                                   "image_urls": [f"{image_server}/img.png"]}))
    assert result_size(fetched) == (320, 200)
    by_name = image_server.replace("127.0.0.1", "localhost")
    named = ok_data(gateway(sb, {"req_key": EDIT, "prompt": "x",
                                 "image_urls": [f"{by_name}/img.png"]}))
    assert result_size(named) == (320, 200)
    # A host that is not loopback is never contacted: its size is assumed.
    remote = ok_data(gateway(sb, {"req_key": EDIT, "prompt": "x",
                                  "image_urls": ["https://images.example.invalid/a.png"]}))
    assert result_size(remote) == (1024, 1024)


def test_outpaint_sizes(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    ratio = ok_data(gateway(sb, {"req_key": OUTPAINT, "binary_data_base64": [png_b64(200, 100)],
                                 "left": 0.5, "right": 0.25, "top": 0.1}))
    assert result_size(ratio) == (350, 110)
    capped = ok_data(gateway(sb, {"req_key": OUTPAINT, "custom_prompt": "sea",
                                  "binary_data_base64": [png_b64(1000, 500)],
                                  "left": 1, "right": 1}))
    assert result_size(capped) == (1920, 320)
    canvas = [png_b64(400, 300), png_b64(400, 300, colour=(255, 255, 255))]
    assert result_size(ok_data(gateway(sb, {"req_key": OUTPAINT,
                                            "binary_data_base64": canvas}))) == (400, 300)
    small = ok_data(gateway(sb, {"req_key": OUTPAINT, "binary_data_base64": canvas,
                                 "max_width": 200}))
    assert result_size(small) == (200, 150)


def test_product_style_sizes(fresh_sandbox: Sandbox) -> None:
    images = [png_b64(400, 200), png_b64(50, 50)]
    base = {"req_key": PRODUCT, "binary_data_base64": images,
            "product_image_input": "uri://binary_data?index=0",
            "ref_image_input": "uri://binary_data?index=1", "positive_prompt": "table"}
    assert result_size(ok_data(gateway(fresh_sandbox, base))) == (1600, 800)
    assert result_size(ok_data(gateway(fresh_sandbox, {**base, "longer_side": 800}))) == (800, 400)
    auto = {**base, "auto_composition_switch": True, "canvas_width": 600, "canvas_height": 400}
    assert result_size(ok_data(gateway(fresh_sandbox, auto))) == (600, 400)
    default_canvas = {**base, "auto_composition_switch": True}
    assert result_size(ok_data(gateway(fresh_sandbox, default_canvas))) == (1000, 1000)


def test_controlnet_size_follows_first_control(fresh_sandbox: Sandbox) -> None:
    body = {"req_key": CONTROLNET, "prompt": "robot",
            "binary_data_base64": [png_b64(320, 240), png_b64(256, 512)],
            "controlnet_args": [{"type": "depth", "binary_data_index": 1, "strength": 0.6},
                                {"type": "canny", "binary_data_index": 0, "strength": 0.4}]}
    data = ok_data(gateway(fresh_sandbox, body))
    assert result_size(data) == (256, 512)
    assert data["rephraser_result"].startswith("robot")


def test_generic_req_keys(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    image = ok_data(gateway(sb, {"req_key": "jimeng_i2i_v30", "prompt": "x",
                                 "binary_data_base64": [png_b64(300, 240)]}))
    assert result_size(image) == (300, 240)
    sized = ok_data(gateway(sb, {"req_key": "img2img_xl_sft", "width": 640, "height": 320}))
    assert result_size(sized) == (640, 320)
    refs = {"req_key": "img2img_anime_accelerated_maintain_id",
            "binary_data_base64": [png_b64(100, 100)],
            "face_image": "uri://binary_data?index=0"}
    assert result_size(ok_data(gateway(sb, refs))) == (100, 100)
    custom = {"req_key": "my_new_req_key_v1", "prompt": "x"}
    assert error_of(gateway(sb, custom)) == (400, 50400, "Access Denied: Internal Error")
    sb.configure(extra_req_keys=["my_new_req_key_v1"])
    assert result_size(ok_data(gateway(sb, custom))) == (512, 512)


def test_unknown_fields_and_int_for_float_are_accepted(fresh_sandbox: Sandbox) -> None:
    body = {"req_key": TXT2IMG, "prompt": "x", "scale": 5, "some_future_field": {"a": 1}}
    ok_data(gateway(fresh_sandbox, body))


# --- validation: every rule names its field ---------------------------------------------

T = {"req_key": TXT2IMG, "prompt": "p"}
E = {"req_key": EDIT, "prompt": "p"}
O1 = {"req_key": OUTPAINT, "binary_data_base64": [png_b64(64, 64)]}
P = {"req_key": PRODUCT, "binary_data_base64": [png_b64(64, 32), png_b64(32, 32)],
     "product_image_input": "uri://binary_data?index=0",
     "ref_image_input": "uri://binary_data?index=1"}
C = {"req_key": CONTROLNET, "prompt": "p", "binary_data_base64": [png_b64(64, 64)],
     "controlnet_args": [{"type": "pose", "binary_data_index": 0, "strength": 0.5}]}
NOT_IMAGE = base64.b64encode(b"just some text, not pixels").decode()
GIF = png_b64(8, 8, "GIF")


def _control(**changes: Any) -> dict[str, Any]:
    return {**C, "controlnet_args": [{**C["controlnet_args"][0], **changes}]}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("width as string", {**T, "width": "512"}, "width: must be an integer"),
    ("width as bool", {**T, "width": True}, "width: must be an integer"),
    ("width out of range", {**T, "width": 1000}, "width: 1000 is out of range [256, 768]"),
    ("scale as string", {**T, "scale": "high"}, "scale: must be a number"),
    ("bool as string", {**T, "use_rephraser": "yes"}, "use_rephraser: must be a boolean"),
    ("str as number", {**T, "model_version": 14}, "model_version: must be a string"),
    ("seed below -1", {**T, "seed": -2}, "seed: -2 is out of range"),
    ("prompt missing", {"req_key": TXT2IMG}, "prompt: is required"),
    ("prompt empty", {**T, "prompt": " "}, "prompt: is required"),
    ("logo not an object", {**T, "logo_info": "yes"}, "logo_info: must be an object"),
    ("logo position choice", {**T, "logo_info": {"position": 7}},
     "logo_info.position: must be one of 0, 1, 2, 3"),
    ("logo opacity range", {**T, "logo_info": {"opacity": 2}}, "logo_info.opacity: 2 is out"),
    ("edit without image", E, "binary_data_base64: exactly one image is required, got 0"),
    ("edit with two images", {**E, "binary_data_base64": [png_b64(8, 8), png_b64(8, 8)]},
     "binary_data_base64: exactly one image is required, got 2"),
    ("edit with two urls", {**E, "image_urls": ["http://a.invalid/1", "http://a.invalid/2"]},
     "image_urls: exactly one image is required, got 2"),
    ("bad base64", {**E, "binary_data_base64": ["not base64!!"]},
     "binary_data_base64[0]: is not valid base64"),
    ("data: prefix", {**E, "binary_data_base64": ["data:image/png;base64," + png_b64(8, 8)]},
     "binary_data_base64[0]: is not valid base64"),
    ("not an image", {**E, "binary_data_base64": [NOT_IMAGE]},
     "binary_data_base64[0]: is not a PNG or JPEG image"),
    ("gif", {**E, "binary_data_base64": [GIF]}, "binary_data_base64[0]: is not a PNG"),
    ("webp (the documented formats are JPEG and PNG)",
     {**E, "binary_data_base64": [png_b64(8, 8, "WEBP")]},
     "binary_data_base64[0]: is not a PNG or JPEG image"),
    ("images not an array", {**E, "binary_data_base64": png_b64(8, 8)},
     "binary_data_base64: must be an array"),
    ("ftp url", {**E, "image_urls": ["ftp://example.com/a.png"]},
     "image_urls[0]: must be an http(s) URL"),
    ("outpaint without sides", O1, "top: ratio mode needs at least one of top, bottom"),
    ("outpaint side zero", {**O1, "left": 0}, "left: 0 is out of range (0, 1]"),
    ("outpaint side too big", {**O1, "top": 1.5}, "top: 1.5 is out of range (0, 1]"),
    ("canvas with ratio", {**O1, "binary_data_base64": [png_b64(8, 8)] * 2, "bottom": 0.5},
     "bottom: side ratios are not allowed in canvas mode"),
    ("mask of another size", {**O1, "binary_data_base64": [png_b64(8, 8), png_b64(9, 8)]},
     "binary_data_base64[1]: the mask must be the same size as the canvas (9x8 vs 8x8)"),
    ("three outpaint images", {**O1, "binary_data_base64": [png_b64(8, 8)] * 3},
     "binary_data_base64: one image (ratio mode) or two"),
    ("product missing", {k: v for k, v in P.items() if k != "product_image_input"},
     "product_image_input: is required"),
    ("ref missing", {k: v for k, v in P.items() if k != "ref_image_input"},
     "ref_image_input: is required"),
    ("ref index missing", {**P, "ref_image_input": "uri://binary_data?index=2"},
     "ref_image_input: refers to binary_data_base64[2], which does not exist"),
    ("product not a url", {**P, "product_image_input": "ftp://x/y.png"},
     "product_image_input: must be an http(s) URL"),
    ("mask bad reference", {**P, "mask_image_input": "uri://binary_data?index=9"},
     "mask_image_input: refers to binary_data_base64[9]"),
    ("light position", {**P, "light_position": "Sideways Light"},
     "light_position: must be one of Left Light"),
    ("product weight", {**P, "product_weight": 2}, "product_weight: 2 is out of range [0, 1.3]"),
    ("controlnet without images", {k: v for k, v in C.items() if k != "binary_data_base64"},
     "binary_data_base64: at least one control image is required"),
    ("controlnet without args", {k: v for k, v in C.items() if k != "controlnet_args"},
     "controlnet_args: is required"),
    ("controlnet empty args", {**C, "controlnet_args": []},
     "controlnet_args: must be a non-empty array"),
    ("controlnet type", _control(type="sketch"),
     "controlnet_args[0].type: must be one of canny, depth, pose"),
    ("controlnet index", _control(binary_data_index=1),
     "controlnet_args[0].binary_data_index: must be an index of the image list [0, 0]"),
    ("controlnet index bool", _control(binary_data_index=False),
     "controlnet_args[0].binary_data_index"),
    ("controlnet strength zero", _control(strength=0),
     "controlnet_args[0].strength: 0 is out of range (0, 1]"),
    ("controlnet strength high", _control(strength=1.5), "controlnet_args[0].strength: 1.5"),
    ("generic bad reference", {"req_key": "jimeng_i2i_v30",
                               "extra": {"styles": ["uri://binary_data?index=0"]}},
     "extra.styles[0]: refers to binary_data_base64[0], which does not exist"),
    ("generic bad image", {"req_key": "jimeng_i2i_v30", "binary_data_base64": [NOT_IMAGE]},
     "binary_data_base64[0]: is not a PNG or JPEG image"),
    ("req_key missing", {"prompt": "p"}, "req_key: is required"),
]


@pytest.mark.parametrize(("body", "expected"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_validation_names_the_field(fresh_sandbox: Sandbox, body: dict[str, Any],
                                    expected: str) -> None:
    status, code, text = error_of(gateway(fresh_sandbox, body))
    assert (status, code) == (400, 50215)
    assert text.startswith("Input invalid for this service: ")
    assert expected in text
    assert fresh_sandbox.stats()["billed"] == 0


def test_unreachable_loopback_url_is_invalid(fresh_sandbox: Sandbox, image_server: str) -> None:
    body = {**E, "image_urls": [f"{image_server}/missing.png"]}
    _, code, text = error_of(gateway(fresh_sandbox, body))
    assert code == 50215 and "image_urls[0]: could not download the image (HTTP 404)" in text


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{not json", b"", "\u4e2d".encode("gbk")])
def test_body_must_be_a_json_object(fresh_sandbox: Sandbox, raw: bytes) -> None:
    assert error_of(gateway(fresh_sandbox, raw)) == (400, 50215, "Input invalid for this service.")


# --- URL results --------------------------------------------------------------------------

def test_return_url_serves_the_image(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    data = ok_data(gateway(sb, {"req_key": TXT2IMG, "prompt": "u", "width": 300,
                                "height": 256, "return_url": True}))
    assert data["binary_data_base64"] == []
    (url,) = data["image_urls"]
    assert url.startswith(f"{sb.base_url}/__sandbox/results/")
    plain = requests.get(url, timeout=5)
    assert plain.status_code == 200 and plain.headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(plain.content)) as image:
        assert image.size == (300, 256)
    requests.get(url, headers={"Authorization": "Bearer leak"}, timeout=5)
    requests.get(url, cookies={"session": "leak"}, timeout=5)
    stats = sb.stats()
    assert stats["images_served"] == 3
    assert stats["downloads_with_credentials"] == 2


def test_result_urls_expire(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    sb.configure(url_ttl=0.3)
    data = ok_data(gateway(sb, {"req_key": TXT2IMG, "prompt": "e", "return_url": True}))
    url = data["image_urls"][0]
    assert requests.get(url, timeout=5).status_code == 200
    time.sleep(0.4)
    expired = requests.get(url, timeout=5)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text and "Request has expired" in expired.text
    unknown = requests.get(f"{sb.base_url}/__sandbox/results/nope.png", timeout=5)
    assert unknown.status_code == 404 and "NoSuchKey" in unknown.text


def test_result_padding_keeps_the_png_valid(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(result_padding=200_000)
    data = ok_data(gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "big", "width": 256,
                                           "height": 256}))
    raw = base64.b64decode(data["binary_data_base64"][0])
    assert len(raw) > 200_000 and b"pdDg" in raw
    assert result_size(data) == (256, 256)


def test_logo_info_draws_a_label(fresh_sandbox: Sandbox) -> None:
    body = {"req_key": TXT2IMG, "prompt": "logo", "width": 256, "height": 256, "seed": 3}
    marked = body | {"logo_info": {"add_logo": True, "position": 2, "opacity": 1.0}}

    def corner(request: dict[str, Any]) -> tuple[int, ...]:
        raw = base64.b64decode(ok_data(gateway(fresh_sandbox, request))["binary_data_base64"][0])
        with Image.open(io.BytesIO(raw)) as image:
            return image.convert("RGB").getpixel((2, 2))

    assert corner(marked) == (255, 255, 255)
    assert corner(body) != (255, 255, 255)


# --- async -------------------------------------------------------------------------------

def submit(sb: Sandbox, body: dict[str, Any]) -> str:
    task_id = ok_data(gateway(sb, body, action="CVSync2AsyncSubmitTask"))["task_id"]
    assert re.fullmatch(r"\d{19}", task_id)
    return task_id


def poll(sb: Sandbox, req_key: str, task_id: str, req_json: str | None = None) -> requests.Response:
    body: dict[str, Any] = {"req_key": req_key, "task_id": task_id}
    if req_json is not None:
        body["req_json"] = req_json
    return gateway(sb, body, action="CVSync2AsyncGetResult")


def test_async_flow(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    task_id = submit(sb, {"req_key": TXT2IMG, "prompt": "async", "width": 256, "height": 320})
    statuses = [ok_data(poll(sb, TXT2IMG, task_id))["status"] for _ in range(2)]
    assert statuses == ["in_queue", "generating"]
    done = ok_data(poll(sb, TXT2IMG, task_id))
    assert done["status"] == "done" and result_size(done) == (256, 320)
    again = ok_data(poll(sb, TXT2IMG, task_id, req_json=json.dumps({"return_url": True})))
    assert again["status"] == "done" and again["binary_data_base64"] == []
    assert requests.get(again["image_urls"][0], timeout=5).status_code == 200
    stats = sb.stats()
    assert stats["billed"] == 1
    assert stats["requests"]["CVSync2AsyncGetResult"] == {"ok": 4}


def test_async_not_found_expired_and_bad_req_json(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    assert ok_data(poll(sb, TXT2IMG, "1234567890123456789"))["status"] == "not_found"
    task_id = submit(sb, {"req_key": TXT2IMG, "prompt": "x"})
    assert ok_data(poll(sb, EDIT, task_id))["status"] == "not_found"  # other req_key
    _, code, text = error_of(poll(sb, TXT2IMG, task_id, req_json="{not json"))
    assert code == 50215 and "req_json" in text
    sb.configure(task_ttl=0.2)
    time.sleep(0.3)
    assert ok_data(poll(sb, TXT2IMG, task_id))["status"] == "expired"


def test_async_polls_knob(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(async_polls=0)
    task_id = submit(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "fast"})
    assert ok_data(poll(fresh_sandbox, TXT2IMG, task_id))["status"] == "done"


def test_async_submit_is_validated(fresh_sandbox: Sandbox) -> None:
    response = gateway(fresh_sandbox, {"req_key": TXT2IMG}, action="CVSync2AsyncSubmitTask")
    assert error_of(response)[1] == 50215
    assert fresh_sandbox.stats()["tasks"] == 0


def test_cancel_task(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox

    def cancel(task_id: str, version: str = "2024-06-06") -> requests.Response:
        return gateway(sb, {"req_key": TXT2IMG, "task_id": task_id}, action="CVCancelTask",
                       version=version)

    queued = submit(sb, {"req_key": TXT2IMG, "prompt": "c"})
    assert ok_data(cancel(queued))["status"] == "cancelled"
    assert ok_data(poll(sb, TXT2IMG, queued))["status"] == "not_found"
    started = submit(sb, {"req_key": TXT2IMG, "prompt": "c"})
    poll(sb, TXT2IMG, started)
    poll(sb, TXT2IMG, started)  # now generating
    assert error_of(cancel(started))[1] == 50215
    assert ok_data(cancel("1")) == {"status": "not_found", "binary_data_base64": None,
                                    "image_urls": None}
    assert gateway_error(cancel(queued, version=VERSION))[2] == "InvalidActionOrVersion"


# --- stats and control ---------------------------------------------------------------------

def test_stats_counts_billing_and_recent(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    body = {"req_key": EDIT, "prompt": "stats", "binary_data_base64": [png_b64(40, 30)]}
    raw = json.dumps(body).encode()
    ok_data(gateway(sb, raw))
    gateway(sb, raw, key="bad")
    gateway(sb, {"req_key": EDIT})
    official(sb, BODY, auth=V4Auth(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN))
    stats = requests.get(f"{sb.base_url}/__sandbox/stats", timeout=5).json()
    assert stats["requests"] == {"CVProcess": {"ok": 2, "auth_failed": 1, "50215": 1}}
    assert stats["billed"] == 2
    assert stats["billed_by_body"][hashlib.sha256(raw).hexdigest()] == 1
    assert stats["in_flight"] == 0 and stats["in_flight_max"] >= 1
    first = stats["recent"][0]
    image = body["binary_data_base64"][0]
    digest = hashlib.sha256(image.encode()).hexdigest()[:16]
    assert first["body"]["binary_data_base64"] == [f"<base64 {len(image)} bytes sha256={digest}>"]
    assert first["body"]["prompt"] == "stats"
    assert first["headers"]["Authorization"] == "***"
    assert first["outcome"] == "ok" and first["status"] == 200 and first["req_key"] == EDIT
    signed = stats["recent"][-1]
    assert signed["headers"]["X-Security-Token"] == "***"
    assert SECRET_KEY not in json.dumps(stats) and SESSION_TOKEN not in json.dumps(stats)


def test_recent_limit(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(recent_limit=2)
    for n in range(4):
        gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": f"n{n}"})
    recent = fresh_sandbox.stats()["recent"]
    assert [entry["body"]["prompt"] for entry in recent] == ["n2", "n3"]


def test_reset_and_config_endpoints(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    changed = requests.post(f"{sb.base_url}/__sandbox/config",
                            json={"qps": 7, "latency": "0-0.01"}, timeout=5)
    assert changed.status_code == 200 and changed.json()["qps"] == 7
    assert sb.config.qps == 7 and sb.config.latency == "0-0.01"
    bad = requests.post(f"{sb.base_url}/__sandbox/config", json={"error_rate": 3}, timeout=5)
    assert bad.status_code == 400 and "error_rate" in bad.json()["error"]
    unknown = requests.post(f"{sb.base_url}/__sandbox/config", json={"port": 1}, timeout=5)
    assert unknown.status_code == 400
    gateway(sb, {"req_key": TXT2IMG, "prompt": "r"})
    assert requests.post(f"{sb.base_url}/__sandbox/reset", timeout=5).json() == {"ok": True}
    stats = sb.stats()
    assert stats["requests"] == {} and stats["recent"] == [] and stats["billed"] == 0
    assert sb.config.qps == 0 and sb.config.latency == 0


def test_connection_close_and_chunked_bodies(fresh_sandbox: Sandbox) -> None:
    closing = gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "c"},
                      headers={"Connection": "close"})
    assert closing.headers["Connection"] == "close"
    ok_data(closing)
    chunks = iter([b'{"req_key": "high_aes_general_v14",', b' "prompt": "chunked"}'])
    response = requests.post(
        f"{fresh_sandbox.base_url}/volcv/v1?Action=CVProcess&Version={VERSION}", data=chunks,
        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    ok_data(response)


def test_keep_alive_reuses_one_connection(fresh_sandbox: Sandbox) -> None:
    session = requests.Session()
    url = f"{fresh_sandbox.base_url}/volcv/v1?Action=CVProcess&Version={VERSION}"
    before = fresh_sandbox.stats()["connections"]
    for _ in range(3):
        ok_data(session.post(url, json={"req_key": TXT2IMG, "prompt": "k"},
                             headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5))
    assert fresh_sandbox.stats()["connections"] - before == 1
    for _ in range(2):  # without a session, each request opens its own connection
        gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "k"})
    assert fresh_sandbox.stats()["connections"] - before == 3


def test_go_duration_format() -> None:
    assert go_duration(0.3125) == "312.5ms"
    assert go_duration(1.2) == "1.2s"
    assert go_duration(84.448e-6) == "84.448µs"
    assert go_duration(16.52978614) == "16.52978614s"
    assert go_duration(75) == "1m15s"
    assert go_duration(0) == "0s"


def test_max_body(fresh_sandbox: Sandbox) -> None:
    fresh_sandbox.configure(max_body=200)
    big = {"req_key": EDIT, "prompt": "x", "binary_data_base64": [png_b64(64, 64)]}
    relay = gateway(fresh_sandbox, big)
    assert relay.status_code == 413 and relay.json()["error"]["code"] == "request_body_too_large"
    proxy = official(fresh_sandbox, big)
    assert proxy.status_code == 413 and "<title>413 Request Entity Too Large</title>" in proxy.text
    ok_data(gateway(fresh_sandbox, {"req_key": TXT2IMG, "prompt": "small"}))


def test_config_from_env_and_checks() -> None:
    from volccli.sandbox import SandboxConfig

    environ = {"VOLCCLI_SANDBOX_QPS": "4", "VOLCCLI_SANDBOX_LATENCY": "0.1-0.3",
               "VOLCCLI_SANDBOX_RELAY_429": "true", "VOLCCLI_SANDBOX_PORT": "9999",
               "VOLCCLI_SANDBOX_EXTRA_REQ_KEYS": "a_v1, b_v2"}
    config = SandboxConfig.from_env(environ, error_rate=0.5)
    assert (config.qps, config.latency, config.relay_429) == (4.0, "0.1-0.3", True)
    assert config.extra_req_keys == ("a_v1", "b_v2") and config.port == 9999
    assert config.error_rate == 0.5
    for bad in ({"error_rate": 1.5}, {"latency": "0.5-0.1"}, {"qps": "fast"},
                {"concurrency": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SandboxConfig(**bad)  # type: ignore[arg-type]


def test_remote_listening_needs_allow_remote() -> None:
    from volccli.sandbox import SandboxConfig

    with pytest.raises(ValueError, match="not a loopback address"):
        Sandbox(SandboxConfig(host="0.0.0.0")).start()


def test_control_endpoints_are_loopback_only() -> None:
    from volccli.sandbox.server import _is_local

    assert _is_local("127.0.0.1") and _is_local("127.9.8.7") and _is_local("::1")
    assert _is_local("::ffff:127.0.0.1")
    assert not _is_local("10.0.0.5") and not _is_local("192.168.1.2")


def test_ipv6_loopback() -> None:
    from volccli.sandbox import SandboxConfig

    with Sandbox(SandboxConfig(host="::1")) as sb:
        assert sb.base_url.startswith("http://[::1]:")
        ok_data(gateway(sb, {"req_key": TXT2IMG, "prompt": "v6"}))
    with pytest.raises(requests.ConnectionError):
        gateway(sb, {"req_key": TXT2IMG, "prompt": "stopped"}, timeout=2)
