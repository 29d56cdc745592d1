"""The history: one SQLite row per request, from single commands and batch jobs alike.

``history.db`` lives in the user data folder (``VOLCCLI_DATA_DIR`` overrides it). WAL
mode and a busy timeout let several volccli processes write at once without losing
rows. A ``History`` keeps one connection for all its rows, used by one thread at a
time: opening a connection per row (and closing it, which checkpoints the WAL) cost
about 0.8 ms of CPU per batch job. Rows of jobs that finish close together share one
short transaction (see ``History``); a process killed with SIGKILL loses at most the
rows of its last ``FLUSH_DELAY`` seconds (its journal and sidecars still have them).
Parameters are the described body (images as hash and source, never their data) and
nothing secret is stored.
History is a convenience: if it cannot be written, a warning is shown once and the
generation carries on.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .output import file_in_the_way
from .periodic import Periodic

if TYPE_CHECKING:
    from .runner import Outcome

DB_NAME: Final = "history.db"
FLUSH_DELAY: Final = 0.2  # seconds a finished job's row may wait to be written
# Writers hold the lock for milliseconds, so 5 s is ample for any number of volccli
# processes; a database held locked for longer (an open sqlite3 shell) costs a command
# at most this long before the history warning, not half a minute.
BUSY_TIMEOUT_MS: Final = 5_000
_OPEN_ATTEMPTS = 20
COLUMNS: Final = (
    "time",
    "command",
    "req_key",
    "request_hash",
    "prompt",
    "params",
    "request_id",
    "outcome",
    "error_code",
    "error_message",
    "exit_code",
    "retries",
    "retry_reasons",
    "elapsed",
    "outputs",
    "task_id",
    "seed",
    "batch",
    "row",
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(COLUMNS)}
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time);
"""
_JSON_COLUMNS = ("params", "retry_reasons", "outputs")


def db_path() -> Path:
    from .config import data_dir

    return data_dir() / DB_NAME


def open_db(path: Path, *, threads: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode that waits for other writers instead of failing.

    ``threads`` lets other threads use it; the caller then serialises every use.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=not threads)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        # With WAL, NORMAL syncs at checkpoints instead of on every commit: a crashed
        # process loses nothing and the database stays consistent; only a power cut can
        # drop the last rows, which is fine for a log.
        conn.execute("PRAGMA synchronous = NORMAL")
        _retry_locked(lambda: conn.executescript(_SCHEMA))
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """``open_db`` for one block: closed at its end."""
    with closing(open_db(path)) as conn:
        yield conn


def _retry_locked(step: Callable[[], object]) -> None:
    # Switching to WAL and creating the table take locks that the busy handler does not
    # always wait for when several processes start at the same moment.
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def row_for(outcome: Outcome, *, batch: str = "", row: int | None = None) -> dict[str, Any]:
    """The history row of one finished job."""
    from .payload import describe_body
    from .runner import prompt_of

    job = outcome.job
    body = dict(job.body)
    if outcome.seed is not None and "seed" in body:
        body["seed"] = outcome.seed
    error = outcome.error
    failed = outcome.status == "failed"
    return {
        "time": outcome.finished or datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "command": job.request.command,
        "req_key": job.request.req_key,
        "request_hash": job.identity,
        "prompt": prompt_of(job.body),
        "params": describe_body(body),
        "request_id": outcome.request_id,
        "outcome": outcome.status,
        "error_code": None if error is None or error.code is None else str(error.code),
        "error_message": error.message if error is not None else None,
        "exit_code": int(error.exit_code) if failed and error is not None else 0,
        "retries": len(outcome.retries) + outcome.reseeds,
        "retry_reasons": list(outcome.retries),
        "elapsed": round(outcome.elapsed, 3),
        "outputs": [
            {"path": str(image.path), "sha256": image.sha256}
            for image in outcome.images
            if image.path is not None
        ],
        "task_id": outcome.task_id or None,
        "seed": outcome.seed,
        "batch": batch or None,
        "row": row if row is not None else job.request.row,
    }


_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def _values(record: dict[str, Any]) -> list[Any]:
    """A row's values in column order, the JSON columns as JSON text."""
    return [
        json.dumps(record.get(name), ensure_ascii=False)
        if name in _JSON_COLUMNS
        else record.get(name)
        for name in COLUMNS
    ]


def insert(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    """One row in its own transaction."""
    with conn:
        conn.execute(_INSERT, _values(record))


def write(path: Path, record: dict[str, Any]) -> None:
    with connect(path) as conn:
        insert(conn, record)


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON_COLUMNS:
        if isinstance(out.get(name), str):
            with suppress(ValueError):
                out[name] = json.loads(out[name])
    return out


# SQLite keeps integers in 64 bits: a larger LIMIT cannot be bound, and means "all".
_LIMIT_MAX: Final = 2**63 - 1
SEARCH_MAX: Final = 4096  # characters; longer text is no search a person means
_TEXT_SEARCHED: Final = ("prompt", "request_id", "command", "req_key", "task_id")
_JSON_SEARCHED: Final = ("params", "outputs")
# Case is ignored for A-Z only, as SQLite's lower() does (built without ICU); the SQL
# pre-filter lowers the columns and gets the text folded the same way, so it never drops a
# row the exact check would keep.
_FOLD: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def query(path: Path, *, limit: int = 20, search: str = "") -> list[dict[str, Any]]:
    """Newest first; at most ``limit`` rows (0 = all).

    ``search`` is literal text (no wildcards), matched ignoring the case of A-Z, in the
    prompt, command, req_key, request id, task id, and the values (not the names) of the
    parameters and outputs: what was sent and where it was written.
    """
    if not path.exists():
        blocker = file_in_the_way(path.parent)
        if blocker is not None:
            # Not "empty": nothing could ever have been written there.
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(blocker))
        return []
    sql = "SELECT * FROM requests"
    args: list[Any] = []
    if search:
        try:
            search.encode("utf-8")
        except UnicodeEncodeError:  # bytes of argv that are not UTF-8: stored text never is
            return []
        needle = search.translate(_FOLD)  # folded here once: the SQL lowers only the columns
        # The JSON columns hold encoded text: a first cheap test on it (every value that
        # contains the text contains its JSON-escaped form), then the exact test on the
        # decoded values, so `"` or `:` match what was typed, not the JSON around it.
        escaped = json.dumps(needle, ensure_ascii=False)[1:-1]
        tests = [f"instr(lower({name}), ?) > 0" for name in _TEXT_SEARCHED]
        args += [needle] * len(_TEXT_SEARCHED)
        for name in _JSON_SEARCHED:
            tests.append(f"(instr(lower({name}), ?) > 0 AND volccli_values_contain({name}, ?))")
            args += [escaped, needle]
        sql += " WHERE " + " OR ".join(tests)
    sql += " ORDER BY time DESC, id DESC"
    if limit > 0:
        sql += " LIMIT ?"
        args.append(min(limit, _LIMIT_MAX))
    with connect(path) as conn:
        conn.row_factory = sqlite3.Row
        conn.create_function("volccli_values_contain", 2, _values_contain, deterministic=True)
        return [_decode(row) for row in conn.execute(sql, args)]


def _values_contain(text: str | None, needle: str) -> bool:
    """Whether a JSON column's values (names left out) contain ``needle``, A-Z folded."""
    if text is None:
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return needle in text.translate(_FOLD)
    return any(needle in leaf.translate(_FOLD) for leaf in _leaves(value))


def _leaves(value: Any) -> Iterator[str]:
    """Every string, number and true/false in a decoded JSON value, as text."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str):
        yield value
    elif value is not None:
        yield json.dumps(value)  # true, false, and numbers as they are stored


def submission(path: Path, req_key: str, task_id: str) -> dict[str, Any] | None:
    """The newest row that knows what task ``task_id`` was asked to make, or None.

    A task submitted by volccli on this machine has a row with its full parameters (the
    submitting command's, or an earlier `task wait` that found them); a row of a bare
    `task wait` only knows the req_key.
    """
    if not path.is_file():
        return None
    with connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT * FROM requests WHERE task_id = ? AND req_key = ? ORDER BY id DESC",
            (task_id, req_key),
        )
        for row in rows:
            record = _decode(row)
            params = record.get("params")
            if isinstance(params, dict) and set(params) - {"req_key", "return_url"}:
                return record
    return None


@dataclass
class History:
    """Writes rows in groups; on the first failure it warns once and stops trying.

    ``record`` only queues the row: a background flush writes what is waiting within
    ``FLUSH_DELAY``, in one transaction, and ``close`` writes the rest. One transaction
    per row cost a batch job more CPU than its journal, and held the database's write
    lock once per job against other volccli processes.
    """

    path: Path
    warn: Callable[[str], None]
    broken: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # the queue and the broken flag
        self._write_lock = threading.Lock()  # the connection: one writer at a time
        self._conn: sqlite3.Connection | None = None
        self._waiting: list[list[Any]] = []
        self._flusher = Periodic(FLUSH_DELAY, self.flush, "volccli-history")

    def record(self, outcome: Outcome, *, batch: str = "", row: int | None = None) -> None:
        if self.broken:
            return
        values = _values(row_for(outcome, batch=batch, row=row))
        with self._lock:
            if self.broken:
                return
            self._waiting.append(values)
        self._flusher.start()

    def flush(self) -> None:
        """Write every waiting row in one transaction."""
        with self._write_lock:
            with self._lock:
                rows, self._waiting = self._waiting, []
                if not rows or self.broken:
                    return
            try:
                if self._conn is None:
                    self._conn = open_db(self.path, threads=True)
                with self._conn:
                    self._conn.executemany(_INSERT, rows)
            except (sqlite3.Error, OSError) as exc:
                with self._lock:
                    self.broken = True
                reason, fix = str(exc), "--no-log skips it"
                blocker = file_in_the_way(self.path.parent)
                if blocker is not None:
                    reason = f"{blocker} is a file, not a folder"
                    fix = "point VOLCCLI_DATA_DIR at a folder, or --no-log skips it"
                self.warn(
                    f"cannot write the history at {self.path} ({reason}); "
                    f"carrying on without it ({fix})"
                )

    def close(self) -> None:
        """Write what is waiting and close; safe to call twice."""
        self._flusher.stop()
        self.flush()
        with self._write_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
