"""What the sandbox remembers between requests: async tasks, served result files and the
counters behind ``GET /__sandbox/stats``. Each store has its own lock; handlers run in
many threads at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .validate import Job

MAX_TASKS: Final = 100_000
MAX_RESULTS: Final = 4096


@dataclass
class Task:
    task_id: str
    job: Job
    body: dict[str, Any]
    created: float  # time.monotonic() at submit
    polls: int = 0
    error_code: int | None = None  # a marker's code, given as the final result
    result_fault: str = ""  # bad-base64 / not-image / expired-url, applied at "done"

    @property
    def req_key(self) -> str:
        return self.job.req_key


class TaskStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, Task] = OrderedDict()

    def add(
        self, job: Job, body: dict[str, Any], error_code: int | None, result_fault: str
    ) -> Task:
        with self._lock:
            task_id = _task_id()
            while task_id in self._tasks:
                task_id = _task_id()
            task = Task(
                task_id,
                job,
                body,
                time.monotonic(),
                error_code=error_code,
                result_fault=result_fault,
            )
            self._tasks[task_id] = task
            while len(self._tasks) > MAX_TASKS:
                self._tasks.popitem(last=False)
            return task

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def poll(self, task_id: str) -> tuple[Task, int] | None:
        """Count one poll; returns the task and its poll number (1 for the first)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            task.polls += 1
            return task, task.polls

    def cancel(
        self, task_id: str, req_key: str, queued_polls: int
    ) -> Literal["cancelled", "started", "not_found"]:
        """Cancel ``task_id`` if it is still queued (polled fewer than ``queued_polls``
        times): "cancelled", "started" (too late) or "not_found".

        A cancelled task is forgotten: the reference's get-result statuses have no
        "cancelled", so a poll of it, like a second cancel, finds nothing.
        """
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.req_key != req_key:
                return "not_found"
            if task.polls >= queued_polls:
                return "started"
            del self._tasks[task_id]
            return "cancelled"

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)

    def clear(self) -> None:
        with self._lock:
            self._tasks.clear()


def _task_id() -> str:
    # 19 digits, like the service's ids ("7418048504813240370").
    return str(10**18 + secrets.randbelow(9 * 10**18))


@dataclass
class Served:
    data: bytes | None  # dropped once expired: only the refusal remains to be served
    expires: float  # time.time()


class ResultStore:
    """Result files behind ``return_url`` links, each with its own expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: OrderedDict[str, Served] = OrderedDict()

    def put(self, data: bytes, ttl: float) -> tuple[str, float]:
        token = secrets.token_urlsafe(18)
        expires = time.time() + ttl
        with self._lock:
            self._files[token] = Served(data, expires)
            while len(self._files) > MAX_RESULTS:
                self._files.popitem(last=False)
        return token, expires

    def get(self, token: str) -> Served | None:
        now = time.time()
        with self._lock:
            served = self._files.get(token)
            if served is not None and served.data is not None and now >= served.expires:
                served.data = None
            return served

    def clear(self) -> None:
        with self._lock:
            self._files.clear()


@dataclass
class Stats:
    """Counters of ``GET /__sandbox/stats``; ``snapshot`` gives its JSON."""

    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    billed: int = 0
    billed_by_body: dict[str, int] = field(default_factory=dict)
    images_served: int = 0
    downloads: int = 0
    downloads_with_credentials: int = 0
    connections: int = 0  # TCP connections accepted: keep-alive clients open few
    recent: deque[dict[str, Any]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self,
        action: str,
        outcome: str,
        *,
        billed_body: str | None,
        entry: dict[str, Any],
        recent_limit: int,
    ) -> None:
        with self.lock:
            by_outcome = self.requests.setdefault(action, {})
            by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
            if billed_body is not None:
                self.billed += 1
                self.billed_by_body[billed_body] = self.billed_by_body.get(billed_body, 0) + 1
            if recent_limit > 0:
                self.recent.append(entry)
            while len(self.recent) > recent_limit:
                self.recent.popleft()

    def download(self, *, served: bool, with_credentials: bool) -> None:
        with self.lock:
            self.downloads += 1
            self.images_served += served
            self.downloads_with_credentials += with_credentials

    def connection(self) -> None:
        with self.lock:
            self.connections += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": {action: dict(counts) for action, counts in self.requests.items()},
                "billed": self.billed,
                "billed_by_body": dict(self.billed_by_body),
                "images_served": self.images_served,
                "downloads": self.downloads,
                "downloads_with_credentials": self.downloads_with_credentials,
                "connections": self.connections,
                "recent": list(self.recent),
            }

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.billed = 0
            self.billed_by_body.clear()
            self.images_served = self.downloads = self.downloads_with_credentials = 0
            self.connections = 0
            self.recent.clear()
