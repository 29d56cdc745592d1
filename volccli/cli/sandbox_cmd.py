"""`volccli sandbox serve`: run the local API emulator in the foreground.

The serve command's options are made from SandboxConfig's fields and the help table
next to it (names, types, defaults and ``VOLCCLI_SANDBOX_*`` variables all come from
there), and only when the `sandbox` command is used: the CLI's start-up never imports
the sandbox. SandboxConfig checks every value, so a bad one is refused with the same
message whichever way it was given.
"""

import dataclasses
import errno
import functools
import inspect
import sys
from typing import Annotated, Any

import typer

from .lazy import LazyGroup, group_from

HELP = "Run the local API emulator."
# Fields that are lists in SandboxConfig take one value per option, under a singular name.
_REPEATED = {"extra_req_keys": "extra-req-key"}


def make(group: LazyGroup) -> Any:
    return group_from(group, "sandbox", build_app())


@functools.cache
def build_app() -> typer.Typer:
    app = typer.Typer(help=HELP, no_args_is_help=True)

    @app.callback()
    def sandbox() -> None:
        """Run the local API emulator."""
        # A callback keeps `serve` a subcommand even while it is the only one.

    app.command("serve")(_serve_command())
    return app


def __getattr__(name: str) -> Any:
    # `python -c "from volccli.cli.sandbox_cmd import app; app()" serve …` still works.
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _serve_command() -> Any:
    from ..sandbox.config import ENV_PREFIX, OPTION_HELP, SandboxConfig
    from .signatures import signature_command

    defaults = SandboxConfig(port=8765)  # the documented default port of `serve`
    params = []
    for item in dataclasses.fields(SandboxConfig):
        help_text, panel = OPTION_HELP[item.name]
        default = getattr(defaults, item.name)
        flag = _REPEATED.get(item.name, item.name.replace("_", "-"))
        if isinstance(default, bool):
            annotation: Any = bool
        elif isinstance(default, tuple):
            annotation, default = list[str] | None, None
        elif item.name == "latency":
            annotation, default = str, str(default)  # seconds, or a range like 0.1-0.5
        else:
            annotation = type(default)
        option = typer.Option(
            f"--{flag}",
            help=help_text.replace("[", "\\["),
            envvar=ENV_PREFIX + item.name.upper(),
            rich_help_panel=panel or None,
        )
        params.append(
            inspect.Parameter(
                item.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, option],
            )
        )
    return signature_command(
        "serve",
        "Serve the emulator until Ctrl-C. The first line of stdout is the base URL.",
        params,
        _serve,
    )


def _serve(options: dict[str, Any]) -> None:
    from ..sandbox import Sandbox, SandboxConfig
    from ..sandbox.config import is_loopback_host

    host, port = options["host"], options["port"]
    if not options["allow_remote"] and not is_loopback_host(host):
        _fail(
            f"refusing to listen on {host}: not a loopback address (add --allow-remote "
            "to serve other machines)"
        )
    options["extra_req_keys"] = tuple(options["extra_req_keys"] or ())
    try:
        config = SandboxConfig(**options)
        sandbox = Sandbox(config).start()
    except ValueError as exc:
        # SandboxConfig names the setting ("error_rate: …"); name the option instead.
        knob, sep, problem = str(exc).partition(": ")
        flag = _REPEATED.get(knob, knob.replace("_", "-"))
        _fail(f"--{flag} {options.get(knob)}: {problem}" if sep and knob in options else str(exc))
    except OSError as exc:
        hint = "; another server has it: pick another --port, or --port 0 for a free one"
        busy = exc.errno == errno.EADDRINUSE
        _fail(f"could not listen on {host}:{port}: {exc.strerror or exc}{hint if busy else ''}")
    _announce(sandbox.base_url, config)
    try:
        sandbox.wait()
    except KeyboardInterrupt:  # Ctrl-C, or `kill` (main() turns SIGTERM into this)
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


def _fail(message: str) -> None:
    typer.echo(f"volccli: error: {message}", err=True)
    raise typer.Exit(2)
