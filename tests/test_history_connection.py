"""A History writes all its rows through one connection, each row committed at once."""

from __future__ import annotations

import sqlite3
import threading
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


def test_rows_from_many_threads_share_one_connection_and_are_visible_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.db"
    opened: list[str] = []
    real_connect = sqlite3.connect

    def counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(str(args[0]))
        return real_connect(*args, **kwargs)

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
    assert opened == [str(path)]
    # Committed row by row: another reader sees them while the History is still open.
    monkeypatch.setattr(history.sqlite3, "connect", real_connect)
    seen = {row["prompt"] for row in query(path, limit=0)}
    assert seen == {f"t{k}-{n}" for k in range(4) for n in range(25)}
    assert warnings == []
    rows.close()
    rows.close()  # closing twice is harmless


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
    assert rows.broken
    assert len(warnings) == 1 and "cannot write the history" in warnings[0]
