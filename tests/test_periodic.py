"""periodic.Periodic: one background thread per instance, no calls after stop."""

from __future__ import annotations

import threading
import time

from volccli.periodic import Periodic


def test_calls_repeat_on_one_thread_and_end_with_stop() -> None:
    calls: list[str] = []
    ticker = Periodic(0.01, lambda: calls.append(threading.current_thread().name), "tick")
    ticker.start()
    ticker.start()  # already running: no second thread
    deadline = time.monotonic() + 5
    while len(calls) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    ticker.stop()
    stopped_at = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped_at
    assert set(calls) == {"tick"}
    assert not any(t.name == "tick" for t in threading.enumerate())


def test_a_stopped_ticker_never_starts() -> None:
    calls: list[int] = []
    ticker = Periodic(0.001, lambda: calls.append(1), "never")
    ticker.stop()
    ticker.start()
    time.sleep(0.02)
    assert calls == []
