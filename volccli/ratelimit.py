"""Client-side rate limiting that listens to the server: the ``client.Limiter`` of a batch.

Requests are spaced evenly at the current rate (a token bucket holding one token), so a
batch never bursts into the account's QPS limit. When the server still answers 50429
or HTTP 429 the rate halves (down to a floor); each success then adds a small step back
until the configured rate is reached again (AIMD, as TCP does). A 50430 concurrency
refusal lowers the number of requests allowed in flight instead, which also climbs back
after a run of successes. The clock and sleep are injectable so the arithmetic can be
tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

FLOOR_QPS: Final = 0.1  # never slower than one request per 10 s
RECOVERY_STEPS: Final = 20  # successes to climb from nothing back to the configured rate
CONCURRENCY_CODES: Final = frozenset({50430, "50430"})
SLOTS_RECOVERY: Final = 10  # successes before one more request may be in flight


class AdaptiveLimiter:
    """Even spacing at ``qps`` (0 = no rate limit), at most ``max_in_flight`` at once."""

    def __init__(
        self,
        qps: float,
        *,
        max_in_flight: int = 0,
        floor: float = FLOOR_QPS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps < 0:
            raise ValueError("qps must be 0 (unlimited) or more")
        self.target = float(qps)
        self.rate = float(qps)
        self.floor = min(floor, qps) if qps else floor
        self.step = max(self.target / RECOVERY_STEPS, 0.01)
        self.max_in_flight = max_in_flight
        self.slots = max_in_flight  # current cap on requests in flight (0 = none)
        self.clock = clock
        self.sleep = sleep
        self.in_flight = 0
        self.throttled = 0  # how many times the server said "too fast"
        self._next = 0.0  # the earliest time the next request may start
        self._last_cut = float("-inf")
        self._successes = 0
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)

    @property
    def limited(self) -> bool:
        return self.target > 0

    def acquire(self) -> None:
        """Wait for a free slot, then for this request's turn."""
        with self._free:
            while self.slots and self.in_flight >= self.slots:
                self._free.wait()
            self.in_flight += 1
            if not self.limited:
                return
            now = self.clock()
            start = max(now, self._next)
            self._next = start + 1.0 / self.rate
        if start > now:
            self.sleep(start - now)

    def release(self) -> None:
        with self._free:
            self.in_flight = max(0, self.in_flight - 1)
            self._free.notify()

    def rate_limited(self, code: int | str | None) -> None:
        """The server refused for speed (50429, HTTP 429) or concurrency (50430)."""
        with self._free:
            self.throttled += 1
            self._successes = 0
            if code in CONCURRENCY_CODES and self.max_in_flight:
                # in_flight still counts the refused request: one fewer would have passed.
                self.slots = max(1, min(self.slots, self.in_flight) - 1)
                return
            if not self.limited:
                return
            now = self.clock()
            # Refusals of one burst arrive together: halve once per interval, not per answer.
            if now - self._last_cut < 1.0 / self.rate:
                return
            self._last_cut = now
            self.rate = max(self.floor, self.rate / 2)
            self._next = max(self._next, now + 1.0 / self.rate)

    def succeeded(self) -> None:
        with self._free:
            if self.limited and self.rate < self.target:
                self.rate = min(self.target, self.rate + self.step)
            self._successes += 1
            recovering = self.slots and self.slots < self.max_in_flight
            if recovering and self._successes >= SLOTS_RECOVERY:
                self._successes = 0
                self.slots += 1
                self._free.notify()
