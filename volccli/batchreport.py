"""What a batch tells the user: results on stdout, progress and a summary on stderr.

Stdout gets each written path (or, with --json, one JSON object per job) as soon as
the job finishes, so a pipeline can consume results while the batch runs. Stderr gets a
rich progress bar on a terminal, or a plain status line every few seconds otherwise,
and a summary at the end. With GITHUB_STEP_SUMMARY set, a Markdown table of outputs
and failures is appended to that file for the CI run's summary page.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import VolccliError
from .ui import UI, detach_stdout

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PLAIN_INTERVAL: Final = 5.0  # seconds between status lines when stderr is not a terminal
STEP_SUMMARY_ROWS: Final = 500  # GitHub caps a step summary at 1 MiB


@dataclass
class Result:
    """How one job (or one invalid row) ended."""

    line: int
    status: str  # ok, skipped, filtered, failed, left
    command: str = ""
    name: str = ""
    index: int = 0
    paths: list[Path] = field(default_factory=list)
    request_id: str = ""
    seed: int | None = None
    task_id: str = ""
    elapsed: float = 0.0
    retries: int = 0
    error: VolccliError | None = None
    note: str = ""
    invalid: bool = False

    def to_json(self) -> dict[str, Any]:
        # An invalid row counts as failed, but says which kind of failure it is.
        out: dict[str, Any] = {
            "row": self.line,
            "status": "invalid" if self.invalid else self.status,
        }
        if self.name:
            out["name"] = self.name
        if self.command:
            out["command"] = self.command
            out["index"] = self.index
        out["paths"] = [str(path) for path in self.paths]
        out["request_id"] = self.request_id or None
        out["seed"] = self.seed
        if self.task_id:
            out["task_id"] = self.task_id
        if self.elapsed:
            out["elapsed"] = round(self.elapsed, 3)
        if self.retries:
            out["retries"] = self.retries
        if self.note:
            out["note"] = self.note
        if self.error is not None:
            out["code"] = self.error.code if self.error.code is not None else self.error.kind
            out["message"] = self.error.message
            if self.error.hint:
                out["hint"] = self.error.hint
            out["exit_code"] = int(self.error.exit_code)
        return out


@dataclass
class Counts:
    total: int = 0
    ok: int = 0
    skipped: int = 0
    filtered: int = 0
    failed: int = 0
    invalid: int = 0
    images: int = 0
    retries: int = 0
    ran: int = 0  # finished in this run (not skipped from the journal): the pace
    left: int = 0  # async tasks no longer waited for after an interrupt

    @property
    def finished(self) -> int:
        return self.ok + self.skipped + self.filtered + self.failed


class Reporter:
    """Thread-safe: workers call ``event`` and ``finished`` while the batch runs."""

    def __init__(
        self,
        ui: UI,
        label: str,
        *,
        json_lines: bool,
        null: bool,
        limiter_state: Callable[[], str] = lambda: "",
        interval: float = PLAIN_INTERVAL,
    ) -> None:
        self.ui = ui
        self.label = label
        self.json_lines = json_lines
        self.null = null
        self.limiter_state = limiter_state
        self.interval = interval
        self.counts = Counts()
        self.results: list[Result] = []
        self.retrying: set[str] = set()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.stdout_closed = False  # the reader of stdout went away: stop the batch

    # --- the run ---------------------------------------------------------------------

    def start(self, total: int) -> None:
        self.counts.total = total
        self.started = time.monotonic()
        if self.ui.quiet:
            return
        if self.ui.interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            # Stdout carries the results: the display must not capture it.
            self._progress = Progress(
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[state]}"),
                TimeRemainingColumn(),
                console=self.ui.console,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("batch", total=total, state="")
        else:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def event(self, key: str, kind: str, info: dict[str, Any]) -> None:
        """A client event of one job: retries show in the progress."""
        with self._lock:
            if kind == "retry":
                self.retrying.add(key)
            elif kind == "request_id":  # an answer came: no longer retrying
                self.retrying.discard(key)
        self._refresh()

    def finished(self, result: Result, *, key: str = "", ran: bool = True) -> None:
        if self._stop.is_set():  # a job still running when a second Ctrl-C left the batch
            return
        with self._lock:
            self.results.append(result)
            counts = self.counts
            if result.invalid:
                counts.invalid += 1
            setattr(counts, result.status, getattr(counts, result.status) + 1)
            counts.images += len(result.paths) if result.status == "ok" else 0
            counts.retries += result.retries
            counts.ran += ran
            self.retrying.discard(key)
            self._emit(result)
        # Invalid rows were listed before the run started.
        shown = not self.json_lines and not result.invalid
        if result.status == "failed" and result.error is not None and shown:
            error = result.error
            hint = f"; {error.hint}" if error.hint else ""
            rid = f" [request {error.request_id}]" if error.request_id else ""
            self.ui.warn(f"{self.label}:{result.line}: {error.message}{rid}{hint}")
        self._refresh()

    def stopping(self, in_flight: int) -> None:
        """Ctrl-C or SIGTERM: no new jobs; say what is still being waited for."""
        jobs = f"{in_flight} job{'s' if in_flight != 1 else ''}"
        self.ui.warn(
            f"stopping: waiting for the {jobs} in flight (already paid for) to finish, "
            "except async tasks, which the next run fetches; Ctrl-C or SIGTERM again to leave now"
        )

    def _emit(self, result: Result) -> None:
        if self.stdout_closed:
            return
        try:
            if self.json_lines:
                sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            elif result.status in ("ok", "skipped"):  # skipped: done by an earlier run
                end = "\0" if self.null else "\n"
                sys.stdout.write("".join(f"{path}{end}" for path in result.paths))
            sys.stdout.flush()
        except BrokenPipeError:
            self.stdout_closed = True
            detach_stdout()

    def stop(self) -> None:
        self._stop.set()
        if self._progress is not None:
            self._refresh()
            self._progress.stop()
            self._progress = None

    # --- display ---------------------------------------------------------------------

    def state_text(self) -> str:
        counts = self.counts
        parts = []
        if counts.failed:
            parts.append(f"{counts.failed} failed")
        if self.retrying:
            parts.append(f"{len(self.retrying)} retrying")
        elapsed = time.monotonic() - self.started
        if counts.ran and elapsed > 0:
            parts.append(f"{counts.ran / elapsed:.1f} jobs/s")
        limit = self.limiter_state()
        if limit:
            parts.append(limit)
        return ", ".join(parts)

    def line(self) -> str:
        counts = self.counts
        text = f"batch {self.label}: {counts.finished}/{counts.total} done"
        state = self.state_text()
        if state:
            text += f", {state}"
        elapsed = time.monotonic() - self.started
        remaining = counts.total - counts.finished
        if counts.ran and remaining > 0:
            text += f", about {remaining * elapsed / counts.ran:.0f}s left"
        return text

    def _refresh(self) -> None:
        progress, task = self._progress, self._task
        if progress is not None and task is not None:
            progress.update(task, completed=self.counts.finished, state=self.state_text())

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.ui.note(self.line())

    # --- the end -----------------------------------------------------------------------

    def summary(
        self, *, elapsed: float, journal: str, exit_code: int, abandoned: int = 0
    ) -> dict[str, Any]:
        """``abandoned``: jobs left in flight by a second Ctrl-C or SIGTERM (perhaps
        billed; the journal has no end for them, so the next run does them again)."""
        counts = self.counts
        unfinished = max(0, counts.total - counts.finished - counts.left + counts.invalid)
        abandoned = min(abandoned, unfinished)
        return {
            "batch": self.label,
            "total": counts.total + counts.invalid,
            "ok": counts.ok,
            "skipped": counts.skipped,
            "filtered": counts.filtered,
            "failed": counts.failed - counts.invalid,
            "invalid": counts.invalid,
            "left_running": counts.left,
            "abandoned": abandoned,
            "not_started": unfinished - abandoned,
            "images": counts.images,
            "retries": counts.retries,
            "elapsed": round(elapsed, 3),
            "journal": journal,
            "exit_code": exit_code,
        }

    def summary_text(self, summary: dict[str, Any]) -> str:
        parts = [f"{summary['ok']} ok"]
        for name in ("skipped", "filtered", "failed", "invalid", "left_running", "not_started"):
            if summary[name]:
                parts.append(f"{summary[name]} {name.replace('_', ' ')}")
            if name == "left_running" and summary["abandoned"]:
                parts.append(f"{summary['abandoned']} abandoned in flight (perhaps billed)")
        images = summary["images"]
        text = f"batch {self.label}: {', '.join(parts)}; {images} image{'' if images == 1 else 's'}"
        text += f" in {summary['elapsed']:.1f}s"
        if summary["retries"]:
            text += f", {summary['retries']} retries"
        limit = self.limiter_state()
        if limit:
            text += f" ({limit})"
        return text

    def step_summary(self, path: Path, summary: dict[str, Any]) -> None:
        """Append a Markdown report for a GitHub Actions run; never fails the batch."""
        lines = [f"### volccli batch `{_cell(self.label)}`", "", self.summary_text(summary), ""]
        written = [r for r in self.results if r.paths]
        failed = [r for r in self.results if r.status == "failed"]
        if written:
            lines += ["| row | name | status | output | request id |", "|---|---|---|---|---|"]
            for result in sorted(written, key=lambda r: (r.line, r.index))[:STEP_SUMMARY_ROWS]:
                for out in result.paths:
                    lines.append(
                        f"| {result.line} | {_cell(result.name)} | {result.status} | "
                        f"`{_cell(str(out))}` | {_cell(result.request_id)} |"
                    )
            if len(written) > STEP_SUMMARY_ROWS:
                lines.append(f"\n… and {len(written) - STEP_SUMMARY_ROWS} more jobs")
            lines.append("")
        if failed:
            lines += ["#### Failures", "", "| row | name | code | message |", "|---|---|---|---|"]
            for result in sorted(failed, key=lambda r: (r.line, r.index))[:STEP_SUMMARY_ROWS]:
                error = result.error
                code = "" if error is None else str(error.code or error.kind)
                message = "" if error is None else error.message
                lines.append(
                    f"| {result.line} | {_cell(result.name)} | {_cell(code)} | {_cell(message)} |"
                )
            lines.append("")
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        except OSError as exc:
            self.ui.warn(f"cannot append to GITHUB_STEP_SUMMARY {path} ({exc.strerror})")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def step_summary_path() -> Path | None:
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None
