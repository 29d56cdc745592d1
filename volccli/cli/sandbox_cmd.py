"""`volccli sandbox serve`: run the local API emulator in the foreground.

The sandbox package (and Pillow) is imported inside the command, so `volccli --help`
stays fast. The option defaults repeat SandboxConfig's; a test keeps them equal.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer

app = typer.Typer(help="Run the local API emulator.", no_args_is_help=True)

_ENV = "VOLCCLI_SANDBOX_"
_FAULTS = "Faults"
_LIMITS = "Limits"
_RESULTS = "Results and tasks"
_CREDENTIALS = "Accepted credentials"


def _env(knob: str) -> str:
    return _ENV + knob.upper()


@app.callback()
def sandbox() -> None:
    """Run the local API emulator."""
    # A callback keeps `serve` a subcommand even while it is the only one.


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; non-loopback needs --allow-remote.",
            envvar=_env("host"),
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            help="Port to listen on (0 picks a free one).",
            envvar=_env("port"),
            min=0,
            max=65535,
        ),
    ] = 8765,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow listening on an address other machines can reach.",
            envvar=_env("allow_remote"),
        ),
    ] = False,
    latency: Annotated[
        str,
        typer.Option(
            help="Seconds added to each API request: fixed (0.3) or a range (0.1-0.5).",
            envvar=_env("latency"),
            rich_help_panel=_FAULTS,
        ),
    ] = "0",
    qps: Annotated[
        float,
        typer.Option(
            help="Requests per second before 50429 (token bucket, burst = qps); 0 = no limit.",
            envvar=_env("qps"),
            min=0,
            rich_help_panel=_LIMITS,
        ),
    ] = 0.0,
    concurrency: Annotated[
        int,
        typer.Option(
            help="API requests in flight before 50430; 0 = no limit.",
            envvar=_env("concurrency"),
            min=0,
            rich_help_panel=_LIMITS,
        ),
    ] = 0,
    relay_429: Annotated[
        bool,
        typer.Option(
            "--relay-429/--no-relay-429",
            help="Gateway style: answer limits with a relay's plain HTTP 429 JSON.",
            envvar=_env("relay_429"),
            rich_help_panel=_LIMITS,
        ),
    ] = False,
    error_rate: Annotated[
        float,
        typer.Option(
            help="Fraction of API requests answered 50500 Internal Error (not billed).",
            envvar=_env("error_rate"),
            min=0,
            max=1,
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    drop_rate: Annotated[
        float,
        typer.Option(
            help="Fraction whose connection is closed without an answer (billed).",
            envvar=_env("drop_rate"),
            min=0,
            max=1,
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    truncate_rate: Annotated[
        float,
        typer.Option(
            help="Fraction whose answer is cut off after half the body (billed).",
            envvar=_env("truncate_rate"),
            min=0,
            max=1,
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    fault_seed: Annotated[
        int,
        typer.Option(
            help="Seed of the random faults, so a run can be repeated.",
            envvar=_env("fault_seed"),
            rich_help_panel=_FAULTS,
        ),
    ] = 0,
    trickle_rate: Annotated[
        float,
        typer.Option(
            help="Bytes per second of answers to the `trickle` marker.",
            envvar=_env("trickle_rate"),
            min=1,
            rich_help_panel=_FAULTS,
        ),
    ] = 200.0,
    max_skew: Annotated[
        float,
        typer.Option(
            help="Seconds X-Date may differ from this clock before InvalidTimestamp.",
            envvar=_env("max_skew"),
            min=0,
            rich_help_panel=_LIMITS,
        ),
    ] = 900.0,
    max_body: Annotated[
        int,
        typer.Option(
            help="Request bodies larger than this many bytes get HTTP 413; 0 = no limit.",
            envvar=_env("max_body"),
            min=0,
            rich_help_panel=_LIMITS,
        ),
    ] = 0,
    url_ttl: Annotated[
        float,
        typer.Option(
            help="Seconds a return_url link stays valid.",
            envvar=_env("url_ttl"),
            min=0,
            rich_help_panel=_RESULTS,
        ),
    ] = 3600.0,
    task_ttl: Annotated[
        float,
        typer.Option(
            help="Seconds an async task can be fetched before it is 'expired'.",
            envvar=_env("task_ttl"),
            min=0,
            rich_help_panel=_RESULTS,
        ),
    ] = 86400.0,
    async_polls: Annotated[
        int,
        typer.Option(
            help="Get-result polls answered in_queue/generating before 'done'.",
            envvar=_env("async_polls"),
            min=0,
            rich_help_panel=_RESULTS,
        ),
    ] = 2,
    result_padding: Annotated[
        int,
        typer.Option(
            help="Bytes of private PNG chunk added to each result (big results, cheaply).",
            envvar=_env("result_padding"),
            min=0,
            rich_help_panel=_RESULTS,
        ),
    ] = 0,
    recent_limit: Annotated[
        int,
        typer.Option(
            help="Requests kept in the 'recent' list of /__sandbox/stats.",
            envvar=_env("recent_limit"),
            min=0,
            rich_help_panel=_RESULTS,
        ),
    ] = 50,
    extra_req_key: Annotated[
        list[str] | None,
        typer.Option(
            help="Accept another req_key with generic checks (repeatable).",
            envvar=_env("extra_req_keys"),
            rich_help_panel=_RESULTS,
        ),
    ] = None,
    lenient_ranges: Annotated[
        bool,
        typer.Option(
            "--lenient-ranges",
            help="Do not enforce ranges the request-kind table marks unconfirmed "
            "(e.g. txt2img sizes above 768).",
            envvar=_env("lenient_ranges"),
            rich_help_panel=_LIMITS,
        ),
    ] = False,
    log_requests: Annotated[
        bool,
        typer.Option(
            "--log-requests",
            help="Print one line per API request on stderr.",
            envvar=_env("log_requests"),
        ),
    ] = False,
    api_key: Annotated[
        str,
        typer.Option(
            help="Bearer key accepted on /volcv/v1.",
            envvar=_env("api_key"),
            rich_help_panel=_CREDENTIALS,
        ),
    ] = "sandbox-api-key",
    access_key: Annotated[
        str,
        typer.Option(
            help="Access key accepted in V4 signatures.",
            envvar=_env("access_key"),
            rich_help_panel=_CREDENTIALS,
        ),
    ] = "AKLTsandboxAccessKey",
    secret_key: Annotated[
        str,
        typer.Option(
            help="Secret key V4 signatures are checked with.",
            envvar=_env("secret_key"),
            rich_help_panel=_CREDENTIALS,
        ),
    ] = "sandbox-secret-key",
    session_token: Annotated[
        str,
        typer.Option(
            help="STS token accepted in X-Security-Token.",
            envvar=_env("session_token"),
            rich_help_panel=_CREDENTIALS,
        ),
    ] = "sandbox-sts-token",
) -> None:
    """Serve the emulator until Ctrl-C. The first line of stdout is the base URL."""
    from volccli.sandbox import Sandbox, SandboxConfig
    from volccli.sandbox.config import is_loopback_host

    if not allow_remote and not is_loopback_host(host):
        _fail(
            f"refusing to listen on {host}: not a loopback address (add --allow-remote "
            "to serve other machines)"
        )
    settings: dict[str, Any] = {
        "latency": latency,
        "qps": qps,
        "concurrency": concurrency,
        "relay_429": relay_429,
        "error_rate": error_rate,
        "drop_rate": drop_rate,
        "truncate_rate": truncate_rate,
        "fault_seed": fault_seed,
        "trickle_rate": trickle_rate,
        "max_skew": max_skew,
        "max_body": max_body,
        "url_ttl": url_ttl,
        "task_ttl": task_ttl,
        "async_polls": async_polls,
        "result_padding": result_padding,
        "recent_limit": recent_limit,
        "extra_req_keys": tuple(extra_req_key or ()),
        "lenient_ranges": lenient_ranges,
        "log_requests": log_requests,
        "api_key": api_key,
        "access_key": access_key,
        "secret_key": secret_key,
        "session_token": session_token,
    }
    try:
        config = SandboxConfig(host=host, port=port, allow_remote=allow_remote, **settings)
        sandbox = Sandbox(config).start()
    except ValueError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"could not listen on {host}:{port}: {exc.strerror or exc}")
    _announce(sandbox.base_url, config)
    _stop_on_sigterm()
    try:
        sandbox.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    typer.echo("sandbox stopped", err=True)


def _announce(url: str, config: Any) -> None:
    """Base URL first (for scripts), then what a person needs to point volccli at it."""
    lines = [
        url,
        f"volccli sandbox: serving the visual API emulator on {url} (Ctrl-C to stop)",
        f"  gateway style:  POST {url}/volcv/v1?Action=CVProcess&Version=2022-08-31",
        f"                  Authorization: Bearer {config.api_key}",
        f"  official style: POST {url}/?Action=CVProcess&Version=2022-08-31 (V4 signature)",
        f"                  access key {config.access_key}  secret key {config.secret_key}",
        f"                  session token (optional) {config.session_token}",
        f"  stats:          GET  {url}/__sandbox/stats",
        "Try (gateway style):",
        f"  export VOLCCLI_BASE_URL={url} VOLCCLI_API_KEY={config.api_key}",
        '  volccli txt2img "a red bicycle"',
        "or (official style, signed):",
        f"  export VOLCCLI_ENDPOINT={url} VOLCCLI_ACCESS_KEY={config.access_key} "
        f"VOLCCLI_SECRET_KEY={config.secret_key}",
        '  volccli --auth official txt2img "a red bicycle"',
    ]
    typer.echo("\n".join(lines))
    sys.stdout.flush()


def _stop_on_sigterm() -> None:
    """Let `kill` stop the server as cleanly as Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Outside the main thread (an embedding test runner) this raises: keep the default.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, interrupt)


def _fail(message: str) -> None:
    typer.echo(f"volccli: error: {message}", err=True)
    raise typer.Exit(2)
