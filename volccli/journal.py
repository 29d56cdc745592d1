"""The batch journal: what was started, submitted and finished, so a rerun can resume.

One JSON object per line, appended before the step it describes goes on (``start``
before a request is sent, ``task`` as soon as an async task id is known, ``done`` after
the files are written), so after a crash or kill -9 the journal never claims more than
happened. A killed process loses nothing it wrote (the page cache outlives it). Against
a power cut, a ``task`` record is fsync'd before the batch goes on (a lost task id means
paying again). ``done`` and ``failed`` records reach the disk within ``FLUSH_DELAY``:
one background flush covers every job that finished in that window, instead of one
fsync per job (the trade PostgreSQL makes with ``synchronous_commit = off``); an image
whose ``done`` record a power cut took is found again by its recipe on resume. ``start``
is not flushed: without a ``done`` after it, a job is sent again either way.
Later records of a job override earlier ones. A torn last line (a kill in the middle of
a write) is ignored. The file is locked while a batch runs, so two batches cannot
interleave their records in one journal. A journal starts with a header naming its
batch; an existing file without one (an image given to --journal by mistake) is refused
before a byte is written to it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

from . import __version__
from .digest import file_sha256
from .errors import InputError, OutputError
from .periodic import Periodic

JOURNAL_NAME: Final = ".volccli-journal.jsonl"
SCHEMA: Final = "volccli.journal/1"
FLUSH_DELAY: Final = 0.2  # seconds a finished job's record may wait for the disk
Flush = Literal["now", "soon", "never"]


def batch_identity(batch: str) -> str:
    """A batch file's identity: its resolved path (batchfile.BatchFile.identity)."""
    return str(Path(batch).expanduser().resolve())


def batch_hash(identity: str) -> str:
    """Which batch a journal belongs to: the hash of its identity (a resolved path, or
    the content hash of a batch read from stdin)."""
    return hashlib.sha256(identity.encode()).hexdigest()


@dataclass
class JobState:
    """What the journal knows of one job (latest record wins)."""

    started: bool = False
    seed: int | None = None
    task_id: str = ""
    outputs: list[dict[str, str]] | None = None  # set by "done": [{"path", "sha256"}]
    error: dict[str, Any] | None = None


@dataclass
class Journal:
    path: Path
    batch: str
    states: dict[str, JobState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fd: int = -1
    _unflushed: bool = False  # records written since the last fsync
    _flush_error: OSError | None = None
    _flusher: Periodic | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path, batch: str, identity: str = "") -> Journal:
        """Open (or create) the journal of ``batch`` (its label in messages; ``identity``
        says which batch it is, by default its resolved path). Refuse a journal that
        belongs to another batch, and any other file, before writing a byte to it."""
        journal = cls(path, batch)
        identity = identity or batch_identity(batch)
        wanted = batch_hash(identity)
        # Where the batch file is seen from the journal's folder: the same after the
        # project is moved or restored elsewhere (a CI cache), unlike its resolved path.
        relative = "" if identity.startswith("<stdin>") else _relative(identity, path.parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise OutputError(
                f"cannot open the journal {path} ({exc.strerror})",
                "choose another -o or --journal",
            ) from None
        journal._fd = fd
        try:
            _lock_file(fd, path)
            raw = journal._raw()
            _check_is_journal(path, raw)
            records = journal._records(raw)
            header = records[0] if records else None
            if header is None:
                journal._append(
                    {
                        "type": "header",
                        "schema": SCHEMA,
                        "batch": batch,
                        "batch_hash": wanted,
                        "batch_relative": relative,
                        "volccli": __version__,
                    }
                )
            elif header.get("batch_hash") != wanted and not (
                relative and header.get("batch_relative") == relative
            ):
                other = str(header.get("batch") or "unknown")
                if other == batch:  # two batches piped in: same label, other content
                    other += ", with other content"
                raise InputError(
                    f"the journal {path} belongs to another batch file ({other}), not {batch}",
                    "use another -o or --journal for this batch, or delete that journal to "
                    "start over",
                )
            for record in records[1:]:
                journal._apply(record)
        except BaseException:
            journal.close()
            raise
        return journal

    def _raw(self) -> bytes:
        with open(self._fd, "rb", closefd=False) as handle:
            handle.seek(0)
            return handle.read()

    def _records(self, raw: bytes) -> list[dict[str, Any]]:
        if raw and not raw.endswith(b"\n"):
            # A record torn by a kill: end it so the next record starts on its own line.
            os.write(self._fd, b"\n")
        records = []
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def _apply(self, record: dict[str, Any]) -> None:
        key = record.get("key")
        if not isinstance(key, str):
            return
        state = self.states.setdefault(key, JobState())
        kind = record.get("type")
        if kind == "start":
            state.started = True
            seed = record.get("seed")
            state.seed = seed if isinstance(seed, int) else None
            state.outputs = None
        elif kind == "task":
            state.task_id = str(record.get("task_id") or "")
        elif kind == "done":
            outputs = record.get("outputs")
            state.outputs = outputs if isinstance(outputs, list) else []
            state.task_id = ""
        elif kind == "failed":
            state.error = record.get("error") if isinstance(record.get("error"), dict) else {}
            if record.get("forget_task"):
                state.task_id = ""

    def _append(self, record: dict[str, Any], *, flush: Flush = "now") -> None:
        record = {**record, "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        try:
            with self._lock:
                if self._flush_error is not None:
                    raise self._flush_error
                if self._fd < 0:  # a worker still running after a second Ctrl-C
                    raise OSError(errno.EBADF, "the journal is closed")
                os.write(self._fd, line)
                if flush == "soon":
                    self._unflushed = True
                    if self._flusher is None:
                        self._flusher = Periodic(FLUSH_DELAY, self._flush, "volccli-journal")
                        self._flusher.start()
            if flush == "now":
                os.fsync(self._fd)
        except OSError as exc:
            raise self._write_error(exc) from None
        with self._lock:
            self._apply(record)

    def _write_error(self, exc: OSError) -> OutputError:
        return OutputError(
            f"cannot write the journal {self.path} ({exc.strerror})",
            "free some space; the batch can be resumed once the journal is writable",
        )

    def _flush(self) -> None:
        """fsync when records are waiting; a failure is raised by the next write or close."""
        with self._lock:
            if not self._unflushed or self._fd < 0:
                return
            self._unflushed = False
        try:
            os.fsync(self._fd)
        except OSError as exc:
            with self._lock:
                self._flush_error = exc

    # --- the steps of a job ----------------------------------------------------------

    def state(self, key: str) -> JobState:
        with self._lock:
            return self.states.get(key) or JobState()

    def start(
        self,
        key: str,
        *,
        identity: str,
        row: int | None,
        index: int,
        seed: int | None,
    ) -> None:
        self._append(
            {
                "type": "start",
                "key": key,
                "identity": identity,
                "row": row,
                "index": index,
                "seed": seed,
            },
            flush="never",
        )

    def task(self, key: str, task_id: str) -> None:
        self._append({"type": "task", "key": key, "task_id": task_id})

    def done(self, key: str, outputs: list[tuple[Path, str]]) -> None:
        self._append(
            {
                "type": "done",
                "key": key,
                "outputs": [
                    {"path": _relative(str(path), self.path.parent), "sha256": sha}
                    for path, sha in outputs
                ],
            },
            flush="soon",
        )

    def failed(self, key: str, error: dict[str, Any], *, forget_task: bool = False) -> None:
        self._append(
            {"type": "failed", "key": key, "error": error, "forget_task": forget_task},
            flush="soon",
        )

    def finished(self, key: str) -> list[Path] | None:
        """The outputs of a job done earlier, if every one is still there unchanged."""
        outputs = self.state(key).outputs
        if outputs is None:
            return None
        paths = []
        for item in outputs:
            path = self._output(item)
            try:
                if not path.is_file() or file_sha256(path) != item.get("sha256"):
                    return None
            except OSError:
                return None
            paths.append(path)
        return paths

    def claimed(self) -> set[str]:
        """Every output path some finished job owns."""
        with self._lock:
            return {
                str(self._output(item))
                for state in self.states.values()
                for item in state.outputs or []
            }

    def _output(self, item: dict[str, str]) -> Path:
        """A recorded output's path: relative to the journal's folder (absolute in the
        journals of earlier versions)."""
        return self.path.parent / str(item.get("path", ""))

    def close(self) -> None:
        """Flush what is waiting, then close; raise OutputError if a flush failed."""
        if self._fd < 0:
            return
        if self._flusher is not None:
            self._flusher.stop()
        self._flush()
        with self._lock:  # no worker writes to the number once it is closed (or reused)
            fd, self._fd = self._fd, -1
        os.close(fd)  # closing also drops the lock
        if self._flush_error is not None:
            raise self._write_error(self._flush_error)


def _relative(target: str, folder: Path) -> str:
    """``target`` as seen from ``folder`` (absolute when there is no such path, as
    across Windows drives)."""
    try:
        return os.path.relpath(target, folder)
    except ValueError:
        return target


def _check_is_journal(path: Path, raw: bytes) -> None:
    """Refuse a file that is not empty and does not start with a journal's header.

    Records are appended, so opening any other file (a --journal typo naming an image,
    the batch file itself) would write JSON onto its end.
    """
    first = next((line for line in raw.splitlines() if line.strip()), None)
    if first is None:
        return  # new (or empty): the header is written next
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if isinstance(header, dict) and header.get("type") == "header":
        schema = header.get("schema")
        if schema == SCHEMA:
            return
        if isinstance(schema, str) and schema.startswith("volccli.journal/"):
            raise InputError(
                f"the journal {path} was written by another volccli version ({schema})",
                "use another -o or --journal, or finish that batch with the volccli that "
                "started it",
            )
    raise InputError(
        f"{path} is not a volccli journal (its records would be appended to it); "
        "nothing was written",
        "give --journal a new file name, or the journal of an earlier run of this batch",
    )


def _lock_file(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one batch per journal is on the user
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(
            f"another volccli batch is using the journal {path}",
            "wait for it to finish, or use another -o or --journal",
        ) from None
