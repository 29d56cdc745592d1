"""The bodies the real service and the things in front of it answer with, byte-shaped
like theirs: the service envelope, the OpenAPI gateway's ResponseMetadata, a relay's own
JSON, nginx's HTML error pages and a storage bucket's XML refusals.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final

from .faults import message
from .jsonbody import clean_text

SUCCESS: Final = 10000
REGION: Final = "cn-north-1"
SERVICE: Final = "cv"
JSON_TYPE: Final = "application/json; charset=utf-8"
HTML_TYPE: Final = "text/html"
XML_TYPE: Final = "application/xml"


@dataclass
class Reply:
    """One HTTP answer and how to deliver it."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    # normal | drop (close, no answer) | truncate (half the body) | trickle (slowly)
    delivery: str = "normal"


def to_json(value: Any) -> bytes:
    # The service writes UTF-8 as is (time_elapsed may hold a raw "µ").
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Request text is cleaned when it is read (jsonbody), but an answer or the stats
        # must never be lost to a lone surrogate that got in some other way.
        return clean_text(text).encode()


def json_reply(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, to_json(value), headers=list(headers or []))


def request_id() -> str:
    """Like the service's: a UTC timestamp then 12 upper-case hex digits."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(6).upper()


def go_duration(seconds: float) -> str:
    """Format a duration the way Go's time.Duration.String does ("312.5ms", "1.2s")."""
    ns = max(0, round(seconds * 1e9))
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _decimal(ns, 1_000) + "µs"
    if ns < 1_000_000_000:
        return _decimal(ns, 1_000_000) + "ms"
    hours, rest = divmod(ns, 3_600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _decimal(rest, 10**9) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = len(str(unit)) - 1
    text = f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".")
    return text


def envelope(code: int, data: Any, *, rid: str, started: float, text: str = "") -> dict[str, Any]:
    """The service envelope; ``started`` is the time.monotonic() the request arrived."""
    return {
        "code": code,
        "data": data,
        "message": text or ("Success" if code == SUCCESS else message(code)),
        "request_id": rid,
        "status": code,
        "time_elapsed": go_duration(time.monotonic() - started),
    }


@dataclass(frozen=True)
class GatewayError:
    """An OpenAPI gateway refusal (ResponseMetadata.Error)."""

    code: str
    text: str

    @property
    def code_n(self) -> int:
        return GATEWAY_CODES[self.code][0]

    @property
    def status(self) -> int:
        return GATEWAY_CODES[self.code][1]


# Code -> (CodeN, HTTP status), reference B.2.
GATEWAY_CODES: Final[dict[str, tuple[int, int]]] = {
    "MissingParameter": (100002, 400),
    "MissingAuthenticationToken": (100003, 401),
    "MissingRequestInfo": (100004, 400),
    "MissingSignature": (100005, 401),
    "InvalidTimestamp": (100006, 400),
    "ServiceNotFound": (100007, 404),
    "InvalidActionOrVersion": (100008, 404),
    "InvalidAccessKey": (100009, 401),
    "SignatureDoesNotMatch": (100010, 401),
}


def gateway_reply(error: GatewayError, *, rid: str, action: str, version: str) -> Reply:
    body = {
        "ResponseMetadata": {
            "RequestId": rid,
            "Action": action,
            "Version": version,
            "Service": SERVICE,
            "Region": REGION,
            "Error": {"CodeN": error.code_n, "Code": error.code, "Message": error.text},
        }
    }
    return json_reply(error.status, body)


def relay_reply(
    status: int,
    text: str,
    code: str,
    *,
    kind: str = "new_api_error",
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    """A new-api / one-api style relay's own error JSON."""
    return json_reply(status, {"error": {"message": text, "type": kind, "code": code}}, headers)


def relay_invalid_token() -> Reply:
    return relay_reply(401, "invalid token", "invalid_api_key")


_NGINX_TITLES: Final = {
    413: "413 Request Entity Too Large",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def nginx_reply(status: int, headers: list[tuple[str, str]] | None = None) -> Reply:
    title = _NGINX_TITLES.get(status, f"{status} Error")
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Reply(status, page.encode(), HTML_TYPE, list(headers or []))


def storage_error(status: int, code: str, text: str) -> Reply:
    """What an object store says about a pre-signed link it will not serve."""
    rid = secrets.token_hex(12).upper()
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{text}</Message>"
        f"<RequestId>{rid}</RequestId><HostId>sandbox</HostId></Error>"
    )
    return Reply(status, xml.encode(), XML_TYPE)
