"""V4 signing against the known-answer vectors of the API reference (§A.3), byte for byte.

Agreement with the official SDK's signer for arbitrary inputs is in test_signing_property.py.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from volccli.auth import (
    EMPTY_SHA256,
    BearerAuth,
    V4Auth,
    canonical_request,
    parse_authorization,
    sign,
)
from volccli.payload import encode_body

AK, SK = "AKLTexampleAK", "exampleSK"
HOST = "visual.volcengineapi.com"
SIGNED = "content-type;host;x-content-sha256;x-date"

# (case, action, X-Date, exact body bytes, X-Content-Sha256, Signature, STS token)
VECTORS = [
    (
        "A",
        "CVProcess",
        "20240102T030405Z",
        b'{"req_key": "high_aes_general_v14", "prompt": "a cat"}',
        "a30f8b8146120a3cf04c28930502653f1a428f16af3d6a56517479a8fb718fb2",
        "8bc990b5ffc21806a60297e109f611a24feb9e3aaa8900eede0ac5549ec8a40e",
        "",
    ),
    (
        "C",
        "CVSync2AsyncGetResult",
        "20250615T120000Z",
        b'{"req_key": "byteedit_v2.0", "task_id": "7392616336519610409", '
        b'"req_json": "{\\"return_url\\": true}"}',
        "580ff08f120df70cb995e44381198e1c17f365190c2f0a76a7d7f6561b0339b8",
        "acb12f79e4fe84476955eb71b4441767c06edb92732ab3b745f7e2799d65e92b",
        "",
    ),
    (
        "D",
        "CVProcess",
        "20250304T050607Z",
        '{"req_key":"byteedit_v2.0","image_urls":["https://example.com/a.png"],'
        '"prompt":"把衣服改成红色","scale":0.5,"seed":-1}'.encode(),
        "8a03d4868c670e2f7df11f474a509dab8f1ce3305b076c3d22781561dd297e32",
        "d26f1505660c8da5e158d61dd8e2b89ae049c6ad48c54c5fe154612d6de4633e",
        "",
    ),
    (
        "E",
        "CVSync2AsyncSubmitTask",
        "20240102T030405Z",
        b'{"req_key":"high_aes_general_v14","prompt":"cat"}',
        "19b1ceac19ed3987fc536cad01f9a15bbc77b2be50ccb1b1ec82f14c5a0782bf",
        "bfd214c73c0e8a85856881339f67456b46c82868aee422a7d5b2b8922bfd5527",
        "STSexampleToken",
    ),
]


def _when(x_date: str) -> datetime:
    return datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("case", "action", "x_date", "body", "body_sha", "signature", "token"),
    VECTORS,
    ids=[v[0] for v in VECTORS],
)
def test_sign_reproduces_the_reference_vectors(
    case: str, action: str, x_date: str, body: bytes, body_sha: str, signature: str, token: str
) -> None:
    assert hashlib.sha256(body).hexdigest() == body_sha
    headers = {"Host": HOST, "Content-Type": "application/json"}
    if token:
        headers["X-Security-Token"] = token
    out = sign(
        method="POST",
        path="/",
        query=[("Action", action), ("Version", "2022-08-31")],
        headers=headers,
        body_sha256=body_sha,
        access_key=AK,
        secret_key=SK,
        now=_when(x_date),
    )
    signed = SIGNED + (";x-security-token" if token else "")
    assert out["X-Date"] == x_date
    assert out["X-Content-Sha256"] == body_sha
    assert out["Authorization"] == (
        f"HMAC-SHA256 Credential={AK}/{x_date[:8]}/cn-north-1/cv/request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


@pytest.mark.parametrize(
    ("case", "action", "x_date", "body", "body_sha", "signature", "token"),
    VECTORS,
    ids=[v[0] for v in VECTORS],
)
def test_v4auth_with_a_fixed_clock_reproduces_the_vectors(
    case: str, action: str, x_date: str, body: bytes, body_sha: str, signature: str, token: str
) -> None:
    auth = V4Auth(AK, SK, token, clock=lambda: _when(x_date))
    url = f"https://{HOST}/?Action={action}&Version=2022-08-31"
    headers = auth.headers("POST", url, hashlib.sha256(body).hexdigest())
    assert headers["Host"] == HOST
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Sha256"] == body_sha
    assert headers["Authorization"].endswith(f"Signature={signature}")
    assert headers.get("X-Security-Token", "") == token
    parsed = parse_authorization(headers["Authorization"])
    assert parsed is not None
    assert (parsed.access_key, parsed.short_date, parsed.region, parsed.service) == (
        AK,
        x_date[:8],
        "cn-north-1",
        "cv",
    )
    assert parsed.signature == signature


def test_case_a_full_authorization_and_intermediates() -> None:
    body = b'{"req_key": "high_aes_general_v14", "prompt": "a cat"}'
    body_sha = hashlib.sha256(body).hexdigest()
    auth = V4Auth(AK, SK, clock=lambda: datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    headers = auth.headers("POST", f"https://{HOST}/?Action=CVProcess&Version=2022-08-31", body_sha)
    assert headers["Authorization"] == (
        "HMAC-SHA256 Credential=AKLTexampleAK/20240102/cn-north-1/cv/request, "
        "SignedHeaders=content-type;host;x-content-sha256;x-date, "
        "Signature=8bc990b5ffc21806a60297e109f611a24feb9e3aaa8900eede0ac5549ec8a40e"
    )
    creq, signed = canonical_request(
        "POST",
        "/",
        [("Version", "2022-08-31"), ("Action", "CVProcess")],  # order must not matter
        {k: v for k, v in headers.items() if k != "Authorization"},
        body_sha,
    )
    assert signed == SIGNED
    assert creq == (
        "POST\n/\nAction=CVProcess&Version=2022-08-31\n"
        "content-type:application/json\nhost:visual.volcengineapi.com\n"
        f"x-content-sha256:{body_sha}\nx-date:20240102T030405Z\n\n"
        f"{SIGNED}\n{body_sha}"
    )
    assert (
        hashlib.sha256(creq.encode()).hexdigest()
        == "ce93b4958f4fad0ba218d37c04971a8380c1f08bf12a91d780e0e82ae445be73"
    )


def test_case_b_get_without_content_type_for_another_service() -> None:
    out = sign(
        method="GET",
        path="/",
        query=[("Action", "ListUsers"), ("Version", "2018-01-01"), ("Limit", "5"), ("Offset", "0")],
        headers={"Host": "open.volcengineapi.com"},
        body_sha256=EMPTY_SHA256,
        access_key="ak",
        secret_key="sk",
        service="iam",
        now=datetime.fromtimestamp(1640712206, tz=timezone.utc),
    )
    assert out["X-Date"] == "20211228T172326Z"
    assert out["Authorization"] == (
        "HMAC-SHA256 Credential=ak/20211228/cn-north-1/iam/request, "
        "SignedHeaders=host;x-content-sha256;x-date, "
        "Signature=4f5b9d2b436092f11a41b5ad0d6eb6a868b30bd3955f480fa1d6bf1ed3073eba"
    )


def test_encode_body_gives_the_exact_bytes_of_vector_d() -> None:
    body = {
        "req_key": "byteedit_v2.0",
        "image_urls": ["https://example.com/a.png"],
        "prompt": "把衣服改成红色",
        "scale": 0.5,
        "seed": -1,
    }
    encoded = encode_body(body)
    assert len(encoded) == 125
    assert encoded.sha256 == "8a03d4868c670e2f7df11f474a509dab8f1ce3305b076c3d22781561dd297e32"
    assert bytes(encoded.data) == VECTORS[2][3]


def test_default_ports_are_not_signed_and_other_ports_are() -> None:
    sha = EMPTY_SHA256

    def auth_for(url: str) -> dict[str, str]:
        return V4Auth(AK, SK, clock=lambda: _when("20240102T030405Z")).headers("POST", url, sha)

    plain = auth_for(f"https://{HOST}/?Action=CVProcess&Version=2022-08-31")
    explicit = auth_for(f"https://{HOST}:443/?Action=CVProcess&Version=2022-08-31")
    other = auth_for(f"https://{HOST}:8443/?Action=CVProcess&Version=2022-08-31")
    assert explicit["Host"] == HOST and explicit["Authorization"] == plain["Authorization"]
    assert other["Host"] == f"{HOST}:8443" and other["Authorization"] != plain["Authorization"]


def test_signature_depends_on_body_clock_and_secret() -> None:
    url = f"https://{HOST}/?Action=CVProcess&Version=2022-08-31"
    now = _when("20240102T030405Z")
    base = V4Auth(AK, SK, clock=lambda: now).headers("POST", url, EMPTY_SHA256)["Authorization"]
    other_body = V4Auth(AK, SK, clock=lambda: now).headers("POST", url, "0" * 64)
    later = V4Auth(AK, SK, clock=lambda: now + timedelta(seconds=1)).headers(
        "POST", url, EMPTY_SHA256
    )
    other_sk = V4Auth(AK, SK + "x", clock=lambda: now).headers("POST", url, EMPTY_SHA256)
    for headers in (other_body, later, other_sk):
        assert headers["Authorization"] != base


def test_secrets_stay_out_of_reprs() -> None:
    v4 = V4Auth("AKLTabcdefghijkl", "super-secret-key", "sts-token-value")
    bearer = BearerAuth("api-key-value-123")
    assert "super-secret-key" not in repr(v4) and "sts-token-value" not in repr(v4)
    assert "AKLTabcdefghijkl" not in repr(v4)
    assert "api-key-value-123" not in repr(bearer)
