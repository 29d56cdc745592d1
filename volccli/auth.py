"""The two ways to authenticate: a gateway Bearer key and Volcengine V4 (HMAC-SHA256).

Both produce the extra headers for one request from its method, URL and the SHA-256 of
the exact body bytes that will be sent, so the signature always covers what goes on the
wire. Pure functions of their inputs (the clock is injectable), so the known-answer
vectors of the API reference can be checked byte for byte and the sandbox can verify
with the same canonicalisation.
"""

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import NamedTuple, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "HMAC-SHA256"
DEFAULT_REGION = "cn-north-1"
DEFAULT_SERVICE = "cv"
CONTENT_TYPE = "application/json"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# The service rejects a signature whose X-Date is further than this from its clock
# (unconfirmed for header signing; the query-signing default is 900 s).
SIGNATURE_VALIDITY_SECONDS = 900


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Authenticator(Protocol):
    """Adds the authentication headers for one request."""

    def headers(self, method: str, url: str, body_sha256: str) -> dict[str, str]: ...


class BearerAuth(NamedTuple):
    api_key: str

    def headers(self, method: str, url: str, body_sha256: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": CONTENT_TYPE}

    def __repr__(self) -> str:  # keep the key out of reprs and tracebacks
        return "BearerAuth(api_key=***)"


class V4Auth(NamedTuple):
    access_key: str
    secret_key: str
    session_token: str = ""
    region: str = DEFAULT_REGION
    service: str = DEFAULT_SERVICE
    clock: Callable[[], datetime] = utcnow

    def headers(self, method: str, url: str, body_sha256: str) -> dict[str, str]:
        parts = urlsplit(url)
        base = {"Host": host_header(parts.scheme, parts.netloc), "Content-Type": CONTENT_TYPE}
        if self.session_token:
            base["X-Security-Token"] = self.session_token
        return sign(
            method=method,
            path=parts.path or "/",
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=base,
            body_sha256=body_sha256,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            service=self.service,
            now=self.clock(),
        )

    def __repr__(self) -> str:
        return f"V4Auth(access_key={mask(self.access_key)}, secret_key=***, region={self.region})"


def host_header(scheme: str, netloc: str) -> str:
    """The Host value as signed: default ports are dropped, as the SDK does."""
    host = netloc.rsplit("@", 1)[-1]
    if (scheme == "https" and host.endswith(":443")) or (scheme == "http" and host.endswith(":80")):
        host = host.rsplit(":", 1)[0]
    return host


def mask(secret: str, keep: int = 4) -> str:
    """Show only the ends of an identifier: enough to recognise it, never to use it."""
    if not secret:
        return ""
    if len(secret) <= keep * 2:
        return "*" * len(secret)
    return f"{secret[:keep]}…{secret[-keep:]}"


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query))


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Content-Type, Content-Md5, Host and every X- header are signed; nothing else."""
    names = []
    for name in headers:
        lower = name.lower()
        if lower in ("content-type", "content-md5", "host") or lower.startswith("x-"):
            names.append(lower)
    return sorted(names)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body_sha256: str,
) -> tuple[str, str]:
    """Return (canonical request, signed headers list)."""
    lowered = {name.lower(): " ".join(value.strip().split()) for name, value in headers.items()}
    names = signed_header_names(headers)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    signed = ";".join(names)
    uri = quote(path or "/", safe="/-_.~")
    text = "\n".join(
        [method.upper(), uri, canonical_query(query), canonical_headers, signed, body_sha256]
    )
    return text, signed


def signing_key(secret_key: str, short_date: str, region: str, service: str) -> bytes:
    key = secret_key.encode()
    for part in (short_date, region, service, "request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body_sha256: str,
    secret_key: str,
    region: str,
    service: str,
    x_date: str,
) -> tuple[str, str, str]:
    """Return (signature hex, signed headers, credential scope)."""
    creq, signed = canonical_request(method, path, query, headers, body_sha256)
    scope = f"{x_date[:8]}/{region}/{service}/request"
    to_sign = "\n".join([ALGORITHM, x_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(secret_key, x_date[:8], region, service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signed, scope


def sign(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body_sha256: str,
    access_key: str,
    secret_key: str,
    region: str = DEFAULT_REGION,
    service: str = DEFAULT_SERVICE,
    now: datetime,
) -> dict[str, str]:
    """Return ``headers`` plus X-Date, X-Content-Sha256 and Authorization."""
    x_date = now.astimezone(timezone.utc).strftime(DATE_FORMAT)
    out = dict(headers)
    out["X-Date"] = x_date
    out["X-Content-Sha256"] = body_sha256
    sig, signed, scope = signature(
        method=method,
        path=path,
        query=list(query),
        headers=out,
        body_sha256=body_sha256,
        secret_key=secret_key,
        region=region,
        service=service,
        x_date=x_date,
    )
    out["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
    return out


class ParsedAuthorization(NamedTuple):
    access_key: str
    short_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Parse a V4 Authorization header; None when it is not one."""
    if not value.startswith(ALGORITHM + " "):
        return None
    fields: dict[str, str] = {}
    for part in value[len(ALGORITHM) + 1 :].split(","):
        key, _, val = part.strip().partition("=")
        fields[key] = val
    try:
        access_key, short_date, region, service, terminator = fields["Credential"].split("/")
        if terminator != "request":
            return None
        return ParsedAuthorization(
            access_key,
            short_date,
            region,
            service,
            tuple(fields["SignedHeaders"].split(";")),
            fields["Signature"],
        )
    except (KeyError, ValueError):
        return None
