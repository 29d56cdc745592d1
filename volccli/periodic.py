"""A daemon thread that calls one function at a fixed interval until it is stopped.

The journal and the history use it to write what several jobs finished in one go (one
fsync, one SQLite transaction) instead of once per job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """Calls ``action`` every ``interval`` seconds once started; ``stop`` waits for it."""

    def __init__(self, interval: float, action: Callable[[], None], name: str) -> None:
        self.interval = interval
        self.action = action
        self.name = name
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread unless it runs already (or was stopped); cheap to call often."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            self.action()

    def stop(self) -> None:
        """No more calls after this returns (a call in progress is finished first)."""
        with self._lock:
            self._stopping.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
