"""What every command shares: global options, settings, the sandbox, the error boundary.

Heavy modules (requests, Pillow, the sandbox) are imported inside functions so that
`--help` and `--version` stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ExitCode, VolccliError, interrupt_exit
from ..ui import UI

if TYPE_CHECKING:
    from ..client import ApiClient
    from ..config import Resolved
    from ..connection import Connection
    from ..history import History
    from ..sandbox import Sandbox


class Globals:
    """Display and connection options given before the command, kept on the root context."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options or {}


def global_options(ctx: typer.Context, local: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Options before the command, overridden by the same options after it."""
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals()
    merged = dict(root.obj.options)
    merged.update({k: v for k, v in (local or {}).items() if v is not None})
    return merged


def make_ui(options: Mapping[str, Any]) -> UI:
    return UI(
        quiet=bool(options.get("quiet")),
        verbose=bool(options.get("verbose")),
        no_color=bool(options.get("no_color") or os.environ.get("NO_COLOR")),
    )


@contextmanager
def reported(ui: UI, *, json_errors: bool = False) -> Iterator[None]:
    """The one place a VolccliError becomes a message and an exit code."""
    try:
        yield
    except VolccliError as error:
        ui.error(error)
        if json_errors:
            print_json({"error": error.to_json()})
        raise typer.Exit(int(error.exit_code)) from None
    except BrokenPipeError:
        # The reader of stdout went away (volccli … | head -1): no traceback, no
        # message, but not success either: not all of the output arrived.
        from ..ui import detach_stdout

        detach_stdout()
        raise typer.Exit(int(ExitCode.OUTPUT)) from None
    except KeyboardInterrupt as exc:
        line, code = interrupt_exit(exc)
        ui.plain(line)
        raise typer.Exit(int(code)) from None


def print_json(record: Mapping[str, Any]) -> None:
    import json  # here, not at the top: every start imports this module

    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def interactive_stdin() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


def ask_secret(label: str) -> str:
    """A hidden prompt, only when a person is at the terminal."""
    if not interactive_stdin():
        return ""
    return str(typer.prompt(label, hide_input=True, default="", show_default=False))


class Session:
    """Settings, connection and (with --sandbox) the in-process emulator of one command."""

    def __init__(self, ui: UI, flags: Mapping[str, Any]) -> None:
        from ..config import resolve

        self.ui = ui
        self.flags = dict(flags)
        settings = {k: v for k, v in flags.items() if k not in ("sandbox", "retry_server_errors")}
        self.resolved: Resolved = resolve(settings)
        self.sandbox: Sandbox | None = None
        self._client: ApiClient | None = None
        self._history: History | None = None
        if flags.get("sandbox"):
            self._start_sandbox()

    def _start_sandbox(self) -> None:
        from .. import sandbox
        from ..config import Value

        try:
            # Its knobs come from VOLCCLI_SANDBOX_* as for `sandbox serve`; it always
            # listens on an ephemeral loopback port.
            config = sandbox.SandboxConfig.from_env(host="127.0.0.1", port=0, allow_remote=False)
        except ValueError as exc:
            from ..errors import ConfigError

            knob, _, problem = str(exc).partition(": ")
            raise ConfigError(
                f"VOLCCLI_SANDBOX_{knob.upper()}: {problem or exc}",
                "fix or unset the variable (volccli sandbox serve --help lists the knobs)",
            ) from None
        server = sandbox.Sandbox(config)
        server.start()
        self.sandbox = server
        values = self.resolved.values
        source = f"sandbox at {server.base_url}"
        for key in ("base_url", "endpoint"):
            values[key] = Value(server.base_url, source)
        values["api_key"] = Value(server.config.api_key, source)
        values["access_key"] = Value(server.config.access_key, source)
        values["secret_key"] = Value(server.config.secret_key, source)
        values.pop("session_token", None)
        if not self.resolved.source("auth").startswith(("flag", "env")):
            values["auth"] = Value("gateway", "sandbox default (--auth official signs requests)")
        self.resolved.sandbox = True
        self.ui.detail(f"sandbox listening on {server.base_url}")

    def connection(self) -> Connection:
        from ..connection import connect

        return connect(
            self.resolved,
            retry_server_errors=bool(self.flags.get("retry_server_errors")),
            ask_secret=ask_secret,
            warn=self.ui.warn,
        )

    def client(self, *, limiter: Any = None) -> ApiClient:
        from ..client import ApiClient

        if self._client is None:
            self._client = ApiClient(self.connection(), limiter=limiter)
        return self._client

    def history(self) -> History:
        """The history this command writes to; its last rows are written by ``close``."""
        if self._history is None:
            from ..history import History, db_path

            self._history = History(db_path(), self.ui.warn)
        return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
        if self._client is not None:
            self._client.close()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
