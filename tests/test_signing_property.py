"""Property test: volccli's V4 signatures agree with the official SDK's signer and pass
the sandbox's verifier, for random bodies, queries, times, keys and tokens."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from volccli.auth import sign
from volccli.sandbox.config import SandboxConfig
from volccli.sandbox.verify import check_v4

signer_v4 = pytest.importorskip("volcengine.auth.SignerV4")
sign_param = pytest.importorskip("volcengine.auth.SignParam")
credentials_module = pytest.importorskip("volcengine.Credentials")

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
TOKEN = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60)
KEY_ID = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    min_size=1,
    max_size=48,
)
HOSTS = st.sampled_from(
    ["visual.volcengineapi.com", "127.0.0.1:8765", "localhost:1", "relay.example.com"]
)
WHEN = st.datetimes(
    min_value=datetime(2001, 1, 1),
    max_value=datetime(2098, 12, 31),
    timezones=st.just(timezone.utc),
)


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=3000),
    query=st.dictionaries(TEXT.filter(bool), TEXT, min_size=1, max_size=5),
    when=WHEN,
    access_key=KEY_ID,
    secret_key=TEXT.filter(bool),
    token=TOKEN,
    host=HOSTS,
)
def test_signature_matches_sdk_and_sandbox(
    body: bytes,
    query: dict[str, str],
    when: datetime,
    access_key: str,
    secret_key: str,
    token: str,
    host: str,
) -> None:
    base = {"Host": host, "Content-Type": "application/json"}
    if token:
        base["X-Security-Token"] = token
    ours = sign(
        method="POST",
        path="/",
        query=list(query.items()),
        headers=base,
        body_sha256=hashlib.sha256(body).hexdigest(),
        access_key=access_key,
        secret_key=secret_key,
        now=when,
    )

    param = sign_param.SignParam()
    param.set_method("POST")
    param.set_host(host)
    param.set_path("/")
    param.set_body(body)
    param.set_query(OrderedDict(query))
    param.set_header_list(OrderedDict([("Host", host), ("Content-Type", "application/json")]))
    param.set_date(when.replace(tzinfo=None))
    theirs = signer_v4.SignerV4.sign_only(
        param, credentials_module.Credentials(access_key, secret_key, "cv", "cn-north-1", token)
    )
    assert ours["X-Content-Sha256"] == theirs.xContextSha256
    assert ours["X-Date"] == theirs.xdate
    assert ours["Authorization"] == theirs.authorization

    config = SandboxConfig(access_key=access_key, secret_key=secret_key, session_token=token)
    verdict = check_v4(
        method="POST",
        path="/",
        query=urlencode(query),
        headers=CaseInsensitiveDict(ours),
        body=body,
        config=config,
        now=when,
    )
    assert verdict is None


@settings(max_examples=60, deadline=None)
@given(body=st.binary(min_size=1, max_size=500), flip=st.integers(min_value=0), when=WHEN)
def test_sandbox_rejects_any_changed_body(body: bytes, flip: int, when: datetime) -> None:
    """Signing one body and sending another never verifies (headers arrive case-insensitive,
    as an HTTP server gives them)."""
    headers = sign(
        method="POST",
        path="/",
        query=[("Action", "CVProcess"), ("Version", "2022-08-31")],
        headers={"Host": "127.0.0.1:8765", "Content-Type": "application/json"},
        body_sha256=hashlib.sha256(body).hexdigest(),
        access_key="AKLTprop",
        secret_key="prop-secret",
        now=when,
    )
    changed = bytearray(body)
    changed[flip % len(body)] ^= 0x01
    config = SandboxConfig(access_key="AKLTprop", secret_key="prop-secret", session_token="")
    verdict = check_v4(
        method="POST",
        path="/",
        query="Action=CVProcess&Version=2022-08-31",
        headers=CaseInsensitiveDict(headers),
        body=bytes(changed),
        config=config,
        now=when,
    )
    assert verdict is not None and verdict.code == "SignatureDoesNotMatch"
