"""A History writes all its rows through one connection, in groups, within FLUSH_DELAY."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from volccli import history
from volccli.history import History, query


def _row(prompt: str) -> dict[str, Any]:
    return {
        "time": "2026-01-01T00:00:00.000+00:00",
        "command": "txt2img",
        "prompt": prompt,
        "params": {"prompt": prompt},
        "outcome": "ok",
        "outputs": [],
        "retry_reasons": [],
    }


def test_rows_from_many_threads_share_one_connection_and_few_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.db"
    opened: list[str] = []  # connections the History opened (readers are not counted)
    begun: list[str] = []  # its transactions
    real_connect = sqlite3.connect

    def counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        if kwargs.get("check_same_thread") is False:  # the History's shared connection
            opened.append(str(args[0]))
            conn.set_trace_callback(
                lambda sql: begun.append(sql) if sql.lstrip().upper().startswith("BEGIN") else None
            )
        return conn

    monkeypatch.setattr(history.sqlite3, "connect", counting_connect)
    monkeypatch.setattr(history, "row_for", lambda outcome, **_: _row(outcome))
    warnings: list[str] = []
    rows = History(path, warnings.append)

    def worker(name: str) -> None:
        for n in range(25):
            rows.record(f"{name}-{n}")  # type: ignore[arg-type]  # row_for is replaced

    threads = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Written within FLUSH_DELAY without close: another reader sees them meanwhile.
    expected = {f"t{k}-{n}" for k in range(4) for n in range(25)}
    deadline = time.monotonic() + 50 * history.FLUSH_DELAY
    while {row["prompt"] for row in query(path, limit=0)} != expected:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert opened == [str(path)]
    assert 1 <= len(begun) < 100  # grouped, not one transaction per row
    assert warnings == []
    rows.close()
    rows.close()  # closing twice is harmless


def test_close_writes_the_rows_still_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "row_for", lambda outcome, **_: _row(outcome))
    monkeypatch.setattr(history, "FLUSH_DELAY", 3600.0)  # no background flush in this test
    path = tmp_path / "history.db"
    rows = History(path, [].append)
    rows.record("last words")  # type: ignore[arg-type]  # row_for is replaced
    assert query(path) == []
    rows.close()
    assert [row["prompt"] for row in query(path)] == ["last words"]


def test_a_history_that_cannot_be_opened_warns_once_and_stops_trying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "row_for", lambda outcome, **_: _row(outcome))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    warnings: list[str] = []
    rows = History(blocker / "data" / "history.db", warnings.append)
    for n in range(3):
        rows.record(f"p{n}")  # type: ignore[arg-type]  # row_for is replaced
        rows.flush()
    rows.record("after")  # type: ignore[arg-type]  # row_for is replaced
    rows.close()
    assert rows.broken
    assert len(warnings) == 1 and "cannot write the history" in warnings[0]
