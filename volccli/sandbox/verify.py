"""Checking the two kinds of credentials: a relay's Bearer key and a V4 signature.

The signature is recomputed with ``volccli.auth`` over the headers *as received* and the
body *as received*, so a client that signs one thing and sends another fails here the
way it would against the real gateway.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Final
from urllib.parse import parse_qsl, unquote

from ..auth import DATE_FORMAT, parse_authorization, signature
from .config import SandboxConfig
from .responses import REGION, SERVICE, GatewayError

REQUIRED_SIGNED: Final = ("host", "x-content-sha256", "x-date")


def bearer_ok(authorization: str | None, api_key: str) -> bool:
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


def check_v4(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    config: SandboxConfig,
    now: datetime,
) -> GatewayError | None:
    """None when the request is signed by the configured key, else the gateway's error."""
    value = headers.get("Authorization")
    if not value:
        return GatewayError("MissingAuthenticationToken",
                            "The request must be signed: the Authorization header is missing.")
    parsed = parse_authorization(value.strip())
    if parsed is None:
        return GatewayError("MissingSignature",
                            "The Authorization header is not an HMAC-SHA256 signature.")
    if not hmac.compare_digest(parsed.access_key.encode(), config.access_key.encode()):
        return GatewayError("InvalidAccessKey", "The access key in the request is not valid.")
    if parsed.region != REGION:
        return GatewayError("MissingRequestInfo",
                            f"Region {parsed.region!r} is not served here; use {REGION}.")
    if parsed.service != SERVICE:
        return GatewayError("ServiceNotFound", f"Service {parsed.service!r} was not found.")
    signed = tuple(name.lower() for name in parsed.signed_headers)
    token_error = _check_token(headers.get("X-Security-Token"), signed, config.session_token)
    if token_error is not None:
        return token_error
    missing = [name for name in REQUIRED_SIGNED if name not in signed]
    if missing:
        return GatewayError("SignatureDoesNotMatch",
                            f"SignedHeaders must include {', '.join(REQUIRED_SIGNED)}; "
                            f"missing {', '.join(missing)}.")
    x_date = headers.get("X-Date") or ""
    date_error = _check_date(x_date, now, config.max_skew)
    if date_error is not None:
        return date_error
    if parsed.short_date != x_date[:8]:
        return GatewayError("SignatureDoesNotMatch",
                            "The credential scope date does not match X-Date.")
    declared = (headers.get("X-Content-Sha256") or "").strip().lower()
    if declared != hashlib.sha256(body).hexdigest():
        return GatewayError("SignatureDoesNotMatch",
                            "The request body hash does not match X-Content-Sha256: the body "
                            "sent is not the body that was signed.")
    return _check_signature(method, path, query, headers, signed, declared, x_date,
                            parsed.signature, config.secret_key)


def _check_token(token: str | None, signed: tuple[str, ...], expected: str) -> GatewayError | None:
    if token is None:
        return None
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return GatewayError("InvalidAccessKey", "The security token in the request is not valid.")
    if "x-security-token" not in signed:
        return GatewayError("InvalidAccessKey", "X-Security-Token must be a signed header.")
    return None


def _check_date(x_date: str, now: datetime, max_skew: float) -> GatewayError | None:
    try:
        when = datetime.strptime(x_date, DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return GatewayError("InvalidTimestamp",
                            f"X-Date {x_date!r} is not a timestamp like 20240102T030405Z.")
    skew = abs((now - when).total_seconds())
    if skew > max_skew:
        return GatewayError("InvalidTimestamp",
                            f"The signature of the request is expired: X-Date is {skew:.0f} s "
                            f"from the server clock (at most {max_skew:.0f} s allowed).")
    return None


def _check_signature(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed: tuple[str, ...],
    body_sha256: str,
    x_date: str,
    given: str,
    secret_key: str,
) -> GatewayError | None:
    values: dict[str, str] = {}
    for name in signed:
        value = headers.get(name)
        if value is None:
            return GatewayError("SignatureDoesNotMatch",
                                f"Signed header {name!r} is not in the request.")
        values[name] = value
    pairs = parse_qsl(query, keep_blank_values=True)
    for candidate in _host_variants(values):
        expected, names, _ = signature(
            method=method, path=unquote(path) or "/", query=pairs, headers=candidate,
            body_sha256=body_sha256, secret_key=secret_key, region=REGION, service=SERVICE,
            x_date=x_date,
        )
        if names == ";".join(signed) and hmac.compare_digest(expected.encode(), given.encode()):
            return None
    return GatewayError("SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you "
                        "provided. Check your Secret Access Key and signing method.")


def _host_variants(values: dict[str, str]) -> list[dict[str, str]]:
    """The headers as received, and, if Host carries the default port, without it: a
    client may sign the Host it will send while its HTTP library adds ``:80``."""
    variants = [values]
    host = values.get("host", "")
    if host.endswith(":80"):
        variants.append({**values, "host": host[: -len(":80")]})
    return variants
