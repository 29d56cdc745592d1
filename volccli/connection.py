"""Which way to reach the API, with which credentials: resolved settings in, a Connection out.

Pure (no network, no requests import), so `--dry-run`, `--print-curl` and `doctor`
share exactly the decision the client makes.
"""

from collections.abc import Callable
from typing import Literal, NamedTuple
from urllib.parse import urlencode, urlsplit

from .auth import Authenticator, BearerAuth, V4Auth
from .config import Resolved
from .errors import ConfigError, InputError
from .settings import DEFAULT_PROFILE, SETTINGS, unsendable

Mode = Literal["gateway", "official"]
GATEWAY_PATH = "/volcv/v1"
# How each value that goes into the request's headers or signature is named in messages.
LABELS = {
    "api_key": "the API key",
    "access_key": "the access key",
    "secret_key": "the secret key",
    "session_token": "the STS session token",
    "region": "the region",
}


class Connection(NamedTuple):
    mode: Mode
    base: str  # gateway base URL or official endpoint, without a trailing slash
    auth: Authenticator
    timeout: float
    connect_timeout: float
    retries: int
    retry_server_errors: bool = False
    why: str = ""  # how the mode was chosen, for doctor and -v

    def url(self, action: str, version: str) -> str:
        query = urlencode({"Action": action, "Version": version})
        path = GATEWAY_PATH if self.mode == "gateway" else "/"
        return f"{self.base}{path}?{query}"


def check_base_url(value: str, name: str, source: str) -> str:
    """An http(s) URL with a host; the error blames the flag or the config that set it."""
    parts = urlsplit(value)
    error = InputError if source.startswith("flag") else ConfigError
    if "@" in parts.netloc:
        # A user:password in the URL would be printed wherever the URL is (dry runs,
        # config show, history): the key goes in the api_key setting instead.
        raise error(
            f"{name} (from {source}) carries credentials before '@'",
            "give the URL without them; the API key goes in VOLCCLI_API_KEY or "
            "`volccli config set api_key`",
        )
    if parts.query or parts.fragment:
        # Not echoed: a query string often carries a token.
        raise error(
            f"{name} (from {source}) has a query string or fragment, which volccli "
            "cannot keep (it adds its own ?Action=…)",
            "write it like https://host[:port][/path]; the API key goes in VOLCCLI_API_KEY",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise error(
            f"{name} {value!r} (from {source}) is not an http(s) URL",
            "write it like https://host[:port][/path], without a query string",
        )
    if name == "base_url" and parts.path.rstrip("/").endswith(GATEWAY_PATH):
        value = value.rstrip("/")[: -len(GATEWAY_PATH)]
    return value.rstrip("/")


def choose_mode(resolved: Resolved) -> tuple[Mode, str]:
    """Pick gateway or official from --auth, or from which credentials are present."""
    explicit = resolved.get("auth")
    if explicit:
        return explicit, f"auth = {explicit} ({resolved.source('auth')})"
    has_key = bool(resolved.get("api_key"))
    has_pair = bool(resolved.get("access_key"))
    if has_key and not has_pair:
        # Without a base URL this still means the gateway: the error then names what is
        # missing (the base URL) instead of claiming no credentials were found.
        if resolved.get("base_url"):
            return "gateway", f"an API key ({resolved.source('api_key')}) and a base URL are set"
        return "gateway", f"an API key is set ({resolved.source('api_key')}) but no base URL"
    if has_pair and not has_key:
        return "official", f"an access key pair is set ({resolved.source('access_key')})"
    if has_key and has_pair:
        if resolved.get("base_url"):
            return (
                "gateway",
                "both an API key and an access key pair are set; the gateway wins "
                "when a base URL is set (choose with --auth)",
            )
        return (
            "official",
            "both an API key and an access key pair are set; no base URL, so official",
        )
    if resolved.get("base_url"):
        return "gateway", f"a base URL is set ({resolved.source('base_url')})"
    return "official", "it is the default (no credentials were found)"


def connect(
    resolved: Resolved,
    *,
    retry_server_errors: bool = False,
    ask_secret: Callable[[str], str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Connection:
    """Build the Connection; raise ConfigError naming the variable and the command to fix it.

    ``warn`` is told, one line each, about values that are set but not used by this
    connection (a session token apart from its key pair)."""
    mode, why = choose_mode(resolved)
    # resolve() has checked these against config.SETTINGS, naming the flag or the source.
    timeout = float(resolved.get("timeout"))
    connect_timeout = float(resolved.get("connect_timeout"))
    retries = int(resolved.get("retries"))
    if mode == "gateway":
        base_url = resolved.get("base_url")
        api_key, source = resolved.get("api_key"), resolved.source("api_key")
        if not base_url:
            if not api_key and resolved.get("access_key"):
                raise _only_the_other(resolved, "gateway")
            raise ConfigError(
                "gateway mode needs a base URL",
                "set VOLCCLI_BASE_URL, pass --base-url, or run `volccli config set base_url URL`",
            )
        base = check_base_url(base_url, "base_url", resolved.source("base_url"))
        if not api_key and ask_secret is not None:
            api_key, source = ask_secret(f"API key for {base}").strip(), "the prompt"
        if not api_key:
            if resolved.get("access_key"):
                raise _only_the_other(resolved, "gateway")
            raise ConfigError(
                "no API key for the gateway",
                "set VOLCCLI_API_KEY or run `volccli config set api_key` (it prompts)",
            )
        check_sendable("api_key", api_key, source)
        return Connection(
            mode,
            base,
            BearerAuth(api_key),
            timeout,
            connect_timeout,
            retries,
            retry_server_errors,
            why,
        )
    endpoint = check_base_url(resolved.get("endpoint"), "endpoint", resolved.source("endpoint"))
    if not (resolved.get("access_key") and resolved.get("secret_key")):
        if resolved.get("api_key"):
            raise _only_the_other(resolved, "official")
        # A half pair or a key file that was there but unusable is the likely reason.
        reasons = [error.message for error in resolved.pair_problems]
        reasons += [note.message for note in resolved.skipped_credentials]
        skipped = "".join(f" ({reason})" for reason in reasons[:1])
        raise ConfigError(
            f"no credentials: no access key pair and no gateway API key were found{skipped}",
            "set VOLCCLI_ACCESS_KEY and VOLCCLI_SECRET_KEY, or run `volccli config set "
            "access_key` and `volccli config set secret_key` (or try `volccli --sandbox …`)",
        )
    for name in ("access_key", "secret_key", "session_token", "region"):
        check_sendable(name, resolved.get(name) or "", resolved.source(name))
    if warn is not None and not resolved.sandbox:
        for unused in resolved.unused:
            warn(unused.note.text)
    auth = V4Auth(
        resolved.get("access_key"),
        resolved.get("secret_key"),
        resolved.get("session_token") or "",
        region=resolved.get("region"),
    )
    return Connection(
        mode, endpoint, auth, timeout, connect_timeout, retries, retry_server_errors, why
    )


def _only_the_other(resolved: Resolved, mode: Mode) -> ConfigError:
    """The mode asked for lacks its credentials while those of the other mode are set:
    say so, rather than that no credentials were found."""
    asked = f"chosen by {resolved.source('auth')}"
    if mode == "official":
        message = (
            f"official mode ({asked}) signs with an access key pair, and none was found; "
            f"the API key that is set (from {resolved.source('api_key')}) is for gateway mode"
        )
        switch = _choose_auth(resolved, "gateway")
        if not resolved.get("base_url"):
            switch += " and a base URL (--base-url or VOLCCLI_BASE_URL)"
        own = (
            "set VOLCCLI_ACCESS_KEY and VOLCCLI_SECRET_KEY (or run `volccli config set "
            "access_key` and `volccli config set secret_key`)"
        )
    else:
        missing = [
            (what, name)
            for what, name in (("a base URL", "base_url"), ("an API key", "api_key"))
            if not resolved.get(name)
        ]
        message = (
            f"gateway mode ({asked}) needs {' and '.join(what for what, _ in missing)}; the "
            f"access key pair that is set (from {resolved.source('access_key')}) is for "
            "official mode"
        )
        switch = _choose_auth(resolved, "official")
        names = [name for _, name in missing]
        commands = {
            "base_url": "`volccli config set base_url URL`",
            "api_key": "`volccli config set api_key`",
        }
        own = (
            f"set {' and '.join(SETTINGS[name].env for name in names)} "
            f"(or {' and '.join(commands[name] for name in names)})"
        )
    return ConfigError(message, f"{switch} to use that, or {own}")


def _choose_auth(resolved: Resolved, mode: Mode) -> str:
    """How to ask for ``mode`` where the current choice of mode came from."""
    source = resolved.source("auth")
    if source.startswith("env "):
        return f"set {source.removeprefix('env ')}={mode}"
    if source.startswith("profile "):
        named = "" if resolved.profile == DEFAULT_PROFILE else f"--profile {resolved.profile} "
        return f"run `volccli config set {named}auth {mode}`"
    return f"use --auth {mode}"


def unsendable_because(name: str, value: str) -> str:
    """Why ``value`` cannot be used as the key ``name`` ("contains a line break, which an
    HTTP header cannot carry"), or "" when it can."""
    problem = unsendable(value)
    if not problem:
        return ""
    what = "a Volcengine key never has" if name == "secret_key" else "an HTTP header cannot carry"
    return f"contains {problem}, which {what}"


def check_sendable(name: str, value: str, source: str) -> None:
    """Refuse, before anything is sent, a key that a request cannot carry: requests would
    fail it mid-request (a line break) or http.client crash on it (a non-Latin-1
    character). The message names the key and its source, never the key."""
    because = unsendable_because(name, value)
    if because:
        # As everywhere: a bad flag is a usage error (2), a bad configuration 3.
        error = InputError if source.startswith("flag") else ConfigError
        raise error(f"{LABELS[name]} (from {source}) {because}", _resend_fix(name, source))


def _resend_fix(name: str, source: str) -> str:
    if name == "region":
        return "use a region name such as cn-north-1"
    if source == "the prompt":
        return "type or paste just the key"
    if source.startswith("env "):
        variables = source.removeprefix("env ").split("/")
        variable = variables[0]
        if name == "secret_key" and len(variables) > 1:
            variable = variables[1]
        elif name == "session_token":
            variable = variable.replace("ACCESS_KEY", "SESSION_TOKEN")
        return f"set {variable} again to just the key"
    return (
        f"store it again with `volccli config set {name}` (it prompts), "
        "or fix it where it came from"
    )
