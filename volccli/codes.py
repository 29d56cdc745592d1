"""Every error code of the API reference, with its error class, retry rule and the fix.

Business codes come from the service envelope (``code``), gateway codes from
``ResponseMetadata.Error``; a relay in front of the API answers with its own JSON and an
HTTP status. The client looks codes up here, so a new code is a table row.
"""

from typing import Final, Literal, NamedTuple

from .errors import (
    ApiRefusedError,
    AuditError,
    ConfigError,
    NetworkError,
    RateLimitError,
    VolccliError,
)

# never: fail now. safe: not processed (rate limits, no connection): resend after a pause.
# server: the server may have done the work (billed): resend only when asked.
# filtered: a post-generation audit rejection: --on-filtered decides.
Retry = Literal["never", "safe", "server", "filtered"]


class CodeInfo(NamedTuple):
    error: type[VolccliError]
    meaning: str
    hint: str
    retry: Retry = "never"


SUCCESS: Final = 10000

_AUDIT_HINT = "rephrase the prompt or use another image; this is not retried"
_POST_AUDIT_HINT = "the result failed the audit; try another seed (--on-filtered reseed:3)"

BUSINESS: Final[dict[int, CodeInfo]] = {
    # Not in the reference's tables, but what the service answers a bad field with.
    50215: CodeInfo(
        ApiRefusedError,
        "the service rejected a field",
        "the message names the field; check it against `volccli COMMAND --help` "
        "(--dry-run shows the body)",
    ),
    50400: CodeInfo(
        ApiRefusedError,
        "access denied",
        "the req_key is wrong or not enabled for this account; enable the "
        "ability in the Volcengine console or check the req_key",
    ),
    50411: CodeInfo(AuditError, "the input image failed the content audit", _AUDIT_HINT),
    50412: CodeInfo(AuditError, "the prompt failed the content audit", _AUDIT_HINT),
    50413: CodeInfo(AuditError, "the prompt hit sensitive or copyrighted words", _AUDIT_HINT),
    50511: CodeInfo(
        AuditError,
        "the generated image failed the content audit",
        _POST_AUDIT_HINT,
        retry="filtered",
    ),
    50512: CodeInfo(AuditError, "the generated text failed the content audit", _AUDIT_HINT),
    50513: CodeInfo(AuditError, "the input video failed the content audit", _AUDIT_HINT),
    50514: CodeInfo(AuditError, "the input audio failed the content audit", _AUDIT_HINT),
    50516: CodeInfo(
        AuditError,
        "the generated video failed the content audit",
        _POST_AUDIT_HINT,
        retry="filtered",
    ),
    50517: CodeInfo(
        AuditError,
        "the generated audio failed the content audit",
        _POST_AUDIT_HINT,
        retry="filtered",
    ),
    50518: CodeInfo(AuditError, "the input image is copyrighted", _AUDIT_HINT),
    50519: CodeInfo(
        AuditError,
        "the generated image matched copyrighted content",
        _POST_AUDIT_HINT,
        retry="filtered",
    ),
    50520: CodeInfo(
        NetworkError,  # a failure of the service, not a verdict on the content
        "the audit service failed",
        "retry later; if it persists, contact support with the request id",
    ),
    50521: CodeInfo(
        NetworkError,  # a failure of the service, not a verdict on the content
        "the copyright-word service failed",
        "retry later; if it persists, contact support with the request id",
    ),
    50522: CodeInfo(
        NetworkError,  # a failure of the service, not a verdict on the content
        "the copyright-image service failed",
        "retry later; if it persists, contact support with the request id",
    ),
    50429: CodeInfo(
        RateLimitError,
        "the account's QPS limit was reached",
        "lower --qps or -j, or ask for a higher limit",
        retry="safe",
    ),
    50430: CodeInfo(
        RateLimitError,
        "the account's concurrency limit was reached",
        "lower -j/--jobs, or ask for a higher limit",
        retry="safe",
    ),
    50500: CodeInfo(
        NetworkError,
        "internal server error",
        "retry later (--retry-server-errors resends; it may be billed)",
        retry="server",
    ),
    50501: CodeInfo(
        NetworkError,
        "internal algorithm error",
        "retry later (--retry-server-errors resends; it may be billed)",
        retry="server",
    ),
}

_SIGNING_HINT = "check the secret key and that this machine's clock is right (volccli doctor)"

GATEWAY: Final[dict[str, CodeInfo]] = {
    "MissingParameter": CodeInfo(
        ApiRefusedError, "Action or Version is missing", "check --action/--version"
    ),
    "MissingAuthenticationToken": CodeInfo(
        ConfigError,
        "the request carried no credentials",
        "set the access key and secret key (volccli config set)",
    ),
    "MissingRequestInfo": CodeInfo(
        ConfigError, "access key, service or region is missing", "check the access key and --region"
    ),
    "MissingSignature": CodeInfo(
        ConfigError,
        "the request was not signed",
        "use --auth official with an access key and secret key",
    ),
    "InvalidTimestamp": CodeInfo(
        ConfigError,
        "the signature has expired or X-Date is off",
        "set this machine's clock right (volccli doctor shows the skew)",
    ),
    "ServiceNotFound": CodeInfo(
        ConfigError, "unknown service", "the endpoint is not the visual API; check --endpoint"
    ),
    "InvalidActionOrVersion": CodeInfo(
        ApiRefusedError, "unknown Action or Version", "check --action/--version"
    ),
    "InvalidAccessKey": CodeInfo(
        ConfigError,
        "the access key is not valid",
        "check the access key, and the STS session token if one is sent (`volccli config "
        "show` says where each came from, and names a token that is set but not used)",
    ),
    "SignatureDoesNotMatch": CodeInfo(ConfigError, "the signature does not match", _SIGNING_HINT),
    "LackPolicy": CodeInfo(
        ApiRefusedError,
        "the sub-account lacks a policy for this API",
        "grant the visual (cv) policy to this user in the console",
    ),
    "AccessDenied": CodeInfo(
        ApiRefusedError,
        "the sub-account is not authorised",
        "grant the visual (cv) policy to this user in the console",
    ),
    "FlowLimitExceeded": CodeInfo(
        RateLimitError, "the gateway's rate limit was reached", "lower --qps or -j", retry="safe"
    ),
    "InternalError": CodeInfo(
        NetworkError, "gateway internal error", "retry later", retry="server"
    ),
    "ServiceUnavailableTemp": CodeInfo(
        NetworkError, "the service is temporarily unavailable", "retry later", retry="server"
    ),
}

# The numeric CodeN of each documented gateway error: an answer may carry only the number.
GATEWAY_NUMBERS: Final[dict[int, str]] = {
    100002: "MissingParameter",
    100003: "MissingAuthenticationToken",
    100004: "MissingRequestInfo",
    100005: "MissingSignature",
    100006: "InvalidTimestamp",
    100007: "ServiceNotFound",
    100008: "InvalidActionOrVersion",
    100009: "InvalidAccessKey",
    100010: "SignatureDoesNotMatch",
    100012: "LackPolicy",
    100013: "AccessDenied",
}

# A relay (a gateway with Bearer keys) answers in its own JSON; only the HTTP status
# says what happened.
RELAY: Final[dict[int, CodeInfo]] = {
    400: CodeInfo(
        ApiRefusedError,
        "the relay rejected the request",
        "check the fields (volccli … --dry-run shows the body)",
    ),
    401: CodeInfo(
        ConfigError,
        "the relay rejected the API key",
        "check the API key (VOLCCLI_API_KEY or `volccli config set api_key`) and the base URL "
        "(volccli doctor)",
    ),
    402: CodeInfo(ApiRefusedError, "the relay account has no balance", "top up the relay account"),
    403: CodeInfo(
        ApiRefusedError,
        "the relay refused access (quota or group)",
        "check the relay account's quota and model access",
    ),
    404: CodeInfo(
        ConfigError,
        "the relay has no such route",
        "check the base URL: it should be the relay root, without /volcv/v1",
    ),
    413: CodeInfo(
        ApiRefusedError,
        "the request body is too large for the relay",
        "use smaller images (--fit) or image URLs",
    ),
    429: CodeInfo(
        RateLimitError, "the relay's rate limit was reached", "lower --qps or -j", retry="safe"
    ),
    500: CodeInfo(NetworkError, "the relay failed", "retry later", retry="server"),
    502: CodeInfo(NetworkError, "bad gateway from the relay", "retry later", retry="server"),
    503: CodeInfo(NetworkError, "the relay is unavailable", "retry later", retry="server"),
    504: CodeInfo(
        NetworkError,
        "the relay timed out waiting for the API",
        "retry later or use --async",
        retry="server",
    ),
}


def business(code: int) -> CodeInfo:
    if code in BUSINESS:
        return BUSINESS[code]
    if 50510 <= code < 50530:
        # The content-audit block (50511-50522): an unlisted one is a refusal, not a
        # server error a retry could be billed for.
        return CodeInfo(AuditError, "the content audit rejected the request", _AUDIT_HINT)
    if 50500 <= code < 50600:
        return CodeInfo(NetworkError, "server error", "retry later", retry="server")
    return CodeInfo(
        ApiRefusedError,
        "the API refused the request",
        "check the fields against `volccli <command> --help` (--dry-run shows the body)",
    )


def gateway_name(code: object, number: object) -> str:
    """The error's name: ``Code``, else the name of its documented ``CodeN``, else the number."""
    if code:
        return str(code)
    try:
        return GATEWAY_NUMBERS.get(int(str(number)), str(number or ""))
    except ValueError:
        return str(number)


def gateway(code: str, status: int | None = None) -> CodeInfo:
    """A gateway error by name; an unlisted one is judged by its HTTP status.

    The gateway's rate-limit and internal error names are not documented: a 429 is a
    rate limit (resent), a 5xx a server error (resent only when that is allowed).
    """
    if code in GATEWAY:
        return GATEWAY[code]
    if status == 429:
        return GATEWAY["FlowLimitExceeded"]
    if status is not None and status >= 500:
        return CodeInfo(
            NetworkError,
            f"the gateway failed (HTTP {status})",
            "retry later (--retry-server-errors resends; it may be billed)",
            retry="server",
        )
    return CodeInfo(
        ApiRefusedError,
        "the API gateway refused the request",
        "check credentials, --endpoint and --region (volccli doctor)",
    )


# The official endpoint answers in ResponseMetadata; an answer in no envelope comes from
# something in front of it (a proxy, a load balancer) or from a wrong --endpoint.
ENDPOINT: Final[dict[int, CodeInfo]] = {
    401: CodeInfo(
        ConfigError,
        "the endpoint refused the request without the API's answer",
        "check --endpoint (volccli doctor)",
    ),
    403: CodeInfo(
        ApiRefusedError,
        "the endpoint refused access without the API's answer",
        "check --endpoint and any proxy in between (volccli doctor)",
    ),
    404: CodeInfo(
        ConfigError,
        "the endpoint has no such route",
        "check --endpoint: it should be the API's host alone, such as "
        "https://visual.volcengineapi.com",
    ),
    413: CodeInfo(
        ApiRefusedError,
        "the request body is too large for the endpoint",
        "use smaller images (--fit) or image URLs",
    ),
    429: CodeInfo(
        RateLimitError, "the endpoint's rate limit was reached", "lower --qps or -j", retry="safe"
    ),
    502: CodeInfo(NetworkError, "bad gateway in front of the API", "retry later", retry="server"),
    503: CodeInfo(NetworkError, "the API is unavailable", "retry later", retry="server"),
    504: CodeInfo(
        NetworkError,
        "the endpoint timed out waiting for the API",
        "retry later or use --async",
        retry="server",
    ),
}


def relay(status: int, mode: str = "gateway") -> CodeInfo:
    """What an answer outside the API's envelopes means, by its HTTP status: the relay's
    own JSON in gateway mode, a proxy's or a wrong URL's answer in official mode."""
    known = RELAY if mode == "gateway" else ENDPOINT
    if status in known:
        return known[status]
    where = "the base URL" if mode == "gateway" else "--endpoint"
    # The message adds "(HTTP <status>: <the answer's start>)" to each meaning.
    if status in (405, 501):  # POST is not served there: the URL is wrong, not the server
        return CodeInfo(ConfigError, "no API at this URL", f"check {where} (volccli doctor)")
    if status >= 500:
        return CodeInfo(NetworkError, "the server failed", "retry later", retry="server")
    return CodeInfo(
        ApiRefusedError,
        "an unexpected answer from the server",
        f"check {where} and the request (--dry-run)",
    )
