"""The batch engine: a pool of workers running planned jobs, journalled step by step.

Each worker takes the next job, journals ``start`` (with the seed it will send), runs
it through the same ``Runner`` as a single command (journalling an async task id the
moment it is known), then journals ``done`` with the SHA-256 of every file written, or
``failed``. ``--fail-fast`` (and a credentials failure, which every other job would
repeat, or a stdout whose reader went away) stops new jobs from starting; jobs already
in flight finish. So does the first Ctrl-C or SIGTERM, except that async jobs stop
polling at once ("left": their task ids are journalled, and the next run fetches them);
a second Ctrl-C leaves at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial

from .batchreport import Reporter, Result
from .errors import ConfigError, VolccliError
from .jobs import BatchJob
from .journal import Journal
from .runner import Outcome, Runner

# Task states after which a journalled task id is useless: the next run resubmits.
LOST_TASK_CODES = ("not_found", "expired")


class UnexpectedError(VolccliError):
    """A bug inside one job: reported for that job instead of killing its worker."""

    kind = "unexpected"


@dataclass
class Engine:
    runner: Runner  # as asked: sync, or async with --async
    fetcher: Runner  # async: fetches tasks that an earlier run submitted
    journal: Journal
    reporter: Reporter
    workers: int
    fail_fast: bool = False
    # Set on Ctrl-C or SIGTERM; the runners' RunOptions.leave: async jobs stop polling.
    leave: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.fatal: VolccliError | None = None
        self.in_flight = 0  # jobs taken by a worker and not finished yet
        self.abandoned = 0  # jobs in flight when a second Ctrl-C or SIGTERM left the batch
        self._alive = 0  # worker threads that have not returned
        self._all_done = threading.Event()
        self._lock = threading.Lock()
        self._queue: list[BatchJob] = []

    def run(self, jobs: list[BatchJob]) -> None:
        """Run the jobs that are not done yet; returns when all started ones finished."""
        for item in jobs:
            if item.done:
                self.reporter.finished(
                    Result(
                        item.line,
                        "skipped",
                        item.job.request.command,
                        item.name,
                        item.job.index,
                        list(item.done),
                        seed=item.job.seed,
                        note="done in an earlier run",
                    ),
                    key=item.key,
                    ran=False,
                )
            else:
                self._queue.append(item)
        self._queue.reverse()  # pop() from the end keeps the file's order
        count = min(self.workers, len(self._queue))
        self._alive = count
        if not count:
            self._all_done.set()
        for n in range(count):
            name = f"volccli-batch-{n}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        try:
            self._wait()
        except KeyboardInterrupt:
            # The jobs in flight are paid for: let them finish and be journalled, unless
            # a second Ctrl-C (or SIGTERM) says to leave now.
            self.stop.set()
            self.leave.set()
            if self.in_flight:
                self.reporter.stopping(self.in_flight)
            try:
                self._wait()
            except KeyboardInterrupt:
                with self._lock:  # what is in flight now is never reported: count it
                    self.abandoned = self.in_flight
                    self.reporter.stop()
                raise
            raise

    def _wait(self) -> None:
        # Not Thread.join: a KeyboardInterrupt inside join() can mark a thread that is
        # still running as stopped (CPython's bpo-45274 handling), and a second join
        # would then return while its job is being written.
        while not self._all_done.wait(0.2):  # short waits keep Ctrl-C responsive
            pass

    def _next(self) -> BatchJob | None:
        with self._lock:
            if self.stop.is_set() or not self._queue:
                return None
            self.in_flight += 1
            return self._queue.pop()

    def _work(self) -> None:
        try:
            while (item := self._next()) is not None:
                try:
                    self._run(item)
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if self.reporter.stdout_closed:  # nobody reads the results any more
                    self.stop.set()
        finally:
            with self._lock:
                self._alive -= 1
                if not self._alive:
                    self._all_done.set()

    def _run(self, item: BatchJob) -> None:
        """Run one job and report it; a failure of the job is its result, not an exception."""
        try:
            result = self._one(item)
        except VolccliError as error:  # the journal could not be written
            result = self._failed(item, error)
        except Exception as exc:  # one job's bug must not stop the others
            error = UnexpectedError(
                f"unexpected error: {type(exc).__name__}: {exc}",
                "run again with -v and report it",
            )
            result = self._failed(item, error)
        if result.status == "failed":
            if isinstance(result.error, ConfigError):
                with self._lock:
                    self.fatal = self.fatal or result.error
                self.stop.set()
            elif self.fail_fast:
                self.stop.set()
        self.reporter.finished(result, key=item.key)

    def _failed(self, item: BatchJob, error: VolccliError) -> Result:
        return Result(
            item.line,
            "failed",
            item.job.request.command,
            item.name,
            item.job.index,
            seed=item.job.seed,
            error=error,
        )

    def _one(self, item: BatchJob) -> Result:
        job = item.job
        outcome = self._attempt(item, item.task_id)
        note = "fetched the task an earlier run submitted" if item.task_id else ""
        lost = outcome.error.code if outcome.error is not None else None
        resubmit = outcome.status == "failed" and lost in LOST_TASK_CODES
        if item.task_id and resubmit and not self.stop.is_set():
            # The earlier run's task cannot be fetched any more (expired, or made by a
            # --sandbox that has stopped): submitting it again is the only way to the
            # image, so it happens now rather than on yet another run.
            outcome = self._attempt(item, "")
            note = f"submitted again: the task an earlier run submitted was {lost}"
        return Result(
            item.line,
            outcome.status,
            job.request.command,
            item.name,
            job.index,
            [image.path for image in outcome.images if image.path is not None],
            outcome.request_id,
            outcome.seed,
            outcome.task_id,
            outcome.elapsed,
            len(outcome.retries) + outcome.reseeds,
            outcome.error,
            note=note,
        )

    def _attempt(self, item: BatchJob, task_id: str) -> Outcome:
        """Run the job (or fetch its task), journalled from start to end."""
        job = item.job
        self.journal.start(
            item.key, identity=job.identity, row=item.line, index=job.index, seed=job.seed
        )
        runner = self.fetcher if task_id else self.runner
        outcome = runner.run(
            job,
            on_event=partial(self.reporter.event, item.key),
            task_id=task_id,
            on_task=partial(self.journal.task, item.key),
        )
        self._journal(item, outcome)
        return outcome

    def _journal(self, item: BatchJob, outcome: Outcome) -> None:
        if outcome.status == "ok":
            self.journal.done(
                item.key,
                [(image.path, image.sha256) for image in outcome.images if image.path is not None],
            )
        elif outcome.status in ("failed", "filtered") and outcome.error is not None:
            error = outcome.error
            self.journal.failed(
                item.key,
                error.to_json(),
                forget_task=error.code in LOST_TASK_CODES,
            )
