"""Everything the user sees on stderr: notes, errors, and a status while waiting.

Stdout is reserved for results (paths or JSON Lines). Animation only when stderr is a
terminal and --quiet is off; rich honours NO_COLOR and FORCE_COLOR by itself.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import VolccliError

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class Waiting:
    """What the status line shows while a request is out."""

    label: str
    started: float = field(default_factory=time.monotonic)
    attempt: int = 1
    request_id: str = ""
    state: str = ""

    def text(self) -> str:
        parts = [f"{self.label}  {time.monotonic() - self.started:5.1f}s"]
        if self.attempt > 1:
            parts.append(f"attempt {self.attempt}")
        if self.state:
            parts.append(self.state)
        if self.request_id:
            parts.append(f"request {self.request_id}")
        return "  ".join(parts)

    def __rich__(self) -> str:
        return self.text()


class UI:
    def __init__(
        self, *, quiet: bool = False, verbose: bool = False, no_color: bool = False
    ) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.no_color = no_color
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=True, highlight=False, no_color=self.no_color or None, soft_wrap=True
            )
        return self._console

    @property
    def interactive(self) -> bool:
        return sys.stderr.isatty() and not self.quiet

    def _print(self, text: str, style: str = "") -> None:
        if self._console is None and not _styled():
            # Not a terminal (CI logs, pipes, files): styles would be dropped anyway, so
            # write the line as it is and leave rich unimported (~15 ms of start-up).
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            return
        # emoji=False: a prompt quoted in a message keeps its ":fox:" as typed.
        self.console.print(text, style=style or None, markup=False, emoji=False)

    def note(self, text: str) -> None:
        if not self.quiet:
            self._print(text, "dim")

    def warn(self, text: str) -> None:
        self._print(f"volccli: warning: {text}", "yellow")

    def detail(self, text: str) -> None:
        if self.verbose:
            self._print(text, "dim")

    def error(self, error: VolccliError) -> None:
        self._print(format_error(error), "bold red")

    def plain(self, text: str) -> None:
        """Unstyled text on stderr (dry-run output, reports)."""
        self._print(text)

    @contextmanager
    def waiting(self, label: str) -> Iterator[Waiting]:
        state = Waiting(label)
        if not self.interactive:
            yield state
            return
        with self.console.status(state, spinner="dots"):
            yield state


def _styled() -> bool:
    """Colours only on a terminal, or where FORCE_COLOR asks for them (as rich does)."""
    return sys.stderr.isatty() or bool(os.environ.get("FORCE_COLOR"))


def detach_stdout() -> None:
    """Point stdout at the null device once its reader has gone (``volccli … | head``).

    Later writes, and the flush at exit, then go nowhere instead of raising
    BrokenPipeError again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def format_error(error: VolccliError) -> str:
    """One line: what went wrong, then how to fix it."""
    text = f"volccli: error: {error.message}"
    if error.request_id:
        text += f" [request {error.request_id}]"
    if error.hint:
        text += f"; {error.hint}"
    return " ".join(text.split())


def event_printer(ui: UI, state: Waiting) -> Any:
    """A client event callback that feeds the status line and the verbose log."""

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "attempt":
            state.attempt = info["attempt"]
        elif kind == "retry":
            line = f"retrying in {info['delay']:.1f}s: {info['reason']}"
            state.state = line
            if not ui.interactive:
                ui.note(f"{state.label}: {line}")
        elif kind == "status":
            state.state = str(info.get("status", ""))
        elif kind == "request_id":
            state.request_id = str(info.get("request_id", ""))

    return on_event
