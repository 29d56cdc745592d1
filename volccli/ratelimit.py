"""Client-side rate limiting that listens to the server: the ``client.Limiter`` of a batch.

Requests are spaced evenly at the current rate (a token bucket holding one token), so a
batch never bursts into the account's QPS limit. The rate follows the server's answers
the way TCP follows packet loss (AIMD), with a memory of where the limit was found:

* A 50429 or HTTP 429 cuts the rate once per round of requests: requests sent before the
  last cut carry no news, so their refusals are counted but do not cut again. A refusal
  halves the rate, and the rate it came at is remembered as the ceiling, where the limit
  is. When the server was seen to take less than half of what was sent in the last
  seconds, the rate goes straight to just under that instead, and that is the ceiling.
  A refusal on the way back up to the ceiling lowers it below the refusal too (CUBIC's
  fast convergence); a refusal while probing near it cuts only to 80 %.
* The climb back runs on time, not on successes (which come faster the faster one
  goes): quick up to 90 % of the ceiling, then a slow probe across it (up to 110 %)
  whose pace halves after every probe that is refused again, so a settled batch meets a
  refusal rarely, and more rarely the longer it runs. Well past the ceiling without a
  refusal the limit has risen, and the rate grows by a tenth a second back to the
  configured one.
* A 50430 concurrency refusal lowers the number of requests allowed in flight to one
  fewer than were in flight when the refused request went out. One more is allowed again
  after a quiet spell, which doubles after every such probe that is refused.
* Requests queue for their turn, and only the one at the head works out when it may go,
  from the rate of that moment: a cut or a climb applies to the very next request, not
  after a queue of turns handed out at the old rate (with many jobs waiting, that queue
  would delay what the server says by many seconds).

Everything is computed on calls (no thread of its own); the clock and sleep are
injectable so the arithmetic can be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

FLOOR_QPS: Final = 0.1  # never slower than one request per 10 s
CONCURRENCY_CODES: Final = frozenset({50430, "50430"})

BACKOFF: Final = 0.5  # a refusal far below or without a known ceiling halves the rate
NEAR_BACKOFF: Final = 0.8  # a refused probe near the ceiling cuts less: the limit is close
SAFE: Final = 0.9  # the quick climb stops at this share of the ceiling
BEYOND: Final = 1.1  # the slow probe goes on to this share of it
CLIMB: Final = 0.1  # quick climb: this share of the ceiling per second
PROBE: Final = 0.02  # probe toward the ceiling: this share per second, halved per refusal
MAX_PROBES: Final = 5  # the probe slows down at most 2**5 times
GROWTH: Final = 1.1  # past the ceiling the limit has risen: this factor per second
WINDOW: Final = 2.0  # seconds of successes that tell what the server accepts, at least
WINDOW_TURNS: Final = 4  # ...and at least this many intervals at the rate refused
MIN_SAMPLES: Final = 3  # fewer successes than this in the window tell nothing
HISTORY: Final = 512  # success times kept (at a higher rate the window is shorter)
SLOT_HOLD: Final = 5.0  # seconds without a 50430 before one more request may be in flight


def climb(rate: float, seconds: float, *, ceiling: float, target: float, probes: int) -> float:
    """The rate ``seconds`` after ``rate`` when no refusal comes: quick, then slow, then free.

    ``ceiling`` is where the last refusal put the limit, ``probes`` how many probes in a
    row were refused near it; the result never exceeds ``target``.
    """
    left = seconds
    while left > 0 and rate < target:
        if rate < SAFE * ceiling:
            speed, edge = CLIMB * ceiling, SAFE * ceiling
        elif rate < BEYOND * ceiling:
            speed, edge = PROBE * ceiling / 2**probes, BEYOND * ceiling
        else:
            # Capped exponent: an idle hour must not overflow the float.
            return min(target, rate * GROWTH ** min(left, 600.0))
        edge = min(edge, target)
        need = (edge - rate) / speed
        if need >= left:
            return rate + speed * left
        rate, left = edge, left - need
    return min(rate, target)


def delivered(times: Iterable[float], now: float, *, window: float = WINDOW) -> float | None:
    """Requests a second the server accepted lately (success times), or None if unknown.

    Measured between the first and the last success of the last ``window`` seconds (a
    count over the whole window would read low by up to one interval); successes that
    all came within a second (the burst an account allows at the start, or the first
    answers of a batch) tell no rate yet.
    """
    recent = [t for t in times if t > now - window]
    if len(recent) < MIN_SAMPLES or recent[-1] - recent[0] < 1.0:
        return None
    return (len(recent) - 1) / (recent[-1] - recent[0])


class _Ticket(threading.local):
    """What this thread's current request was sent under, for judging its refusal."""

    rate_epoch = -1
    rate = 0.0
    in_flight = 0  # requests in the air when it went out, itself included


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
        self.ceiling = 0.0  # where the last refusal put the limit (0 = no refusal yet)
        self.probes = 0  # probes refused in a row near the ceiling
        self.max_in_flight = max_in_flight
        self.slots = max_in_flight  # current cap on requests in flight (0 = none)
        self.slot_ceiling = 0  # requests in the air when the last 50430 came (0 = none)
        self.slot_probes = 0
        self.clock = clock
        self.sleep = sleep
        self.in_flight = 0  # requests sent and not answered yet
        self.throttled = 0  # how many times the server said "too fast"
        self.successes = 0  # requests that succeeded (the client's mark of progress)
        self._last = float("-inf")  # when the latest request went out
        self._head = False  # a request is at the head of the queue, waiting for its turn
        self._updated = 0.0  # when the rate was last brought up to date
        self._slot_since = 0.0  # when the slot cap last changed
        self._done: deque[float] = deque(maxlen=HISTORY)
        self._rate_epoch = 0  # counts rate cuts
        self._ticket = _Ticket()
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)  # the head waits here for a slot
        self._turn = threading.Condition(self._lock)  # the rest wait here to be the head

    @property
    def limited(self) -> bool:
        return self.target > 0

    @property
    def throttling(self) -> bool:
        """True while the server's refusals hold the rate or the in-flight cap down."""
        return (self.limited and self.rate < self.target) or self.slots < self.max_in_flight

    def acquire(self) -> None:
        """Wait for this request's turn at the current rate, and for a free slot."""
        with self._lock:
            if not self.limited:  # no queue: just the cap on requests in flight
                while self.slots and self.in_flight >= self.slots:
                    self._free.wait()
                self._send()
                return
            while self._head:
                self._turn.wait()
            self._head = True
            try:
                self._wait_turn()
                self._send()
            finally:
                self._head = False
                self._turn.notify()

    def _wait_turn(self) -> None:
        """As the head of the queue (lock held): sleep until the rate allows, then a slot."""
        while True:
            now = self.clock()
            if self.rate < self.target:
                self._advance(now)
            start = self._last + 1.0 / self.rate
            if start > now:
                # Asleep without the lock, so answers (and cuts) come in meanwhile; then
                # the turn is worked out again from the rate of that moment.
                self._lock.release()
                try:
                    self.sleep(start - now)
                finally:
                    self._lock.acquire()
                continue
            if self.slots and self.in_flight >= self.slots:
                self._free.wait()
                continue
            self._last = now
            return

    def _send(self) -> None:
        self.in_flight += 1
        ticket = self._ticket
        ticket.in_flight = self.in_flight
        ticket.rate_epoch = self._rate_epoch
        ticket.rate = self.rate

    def release(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            self._free.notify()

    def rate_limited(self, code: int | str | None) -> None:
        """The server refused for speed (50429, HTTP 429) or concurrency (50430)."""
        ticket = self._ticket
        with self._free:
            self.throttled += 1
            if code in CONCURRENCY_CODES and self.max_in_flight:
                self._too_many(ticket.in_flight)
            elif self.limited and ticket.rate_epoch == self._rate_epoch:
                self._too_fast(ticket.rate)

    def succeeded(self) -> None:
        with self._free:
            self.successes += 1
            if not self.limited and self.slots >= self.max_in_flight:
                return
            now = self.clock()
            if self.limited:
                self._done.append(now)
            if self.slots < self.max_in_flight and now - self._slot_since >= (
                SLOT_HOLD * 2**self.slot_probes
            ):
                self.slots += 1
                self._slot_since = now
                if self.slots > self.slot_ceiling:  # past the refused level: it has moved
                    self.slot_probes = 0
                self._free.notify()

    def _advance(self, now: float) -> None:
        self.rate = climb(
            self.rate,
            now - self._updated,
            ceiling=self.ceiling,
            target=self.target,
            probes=self.probes,
        )
        self._updated = now

    def _too_fast(self, sent: float) -> None:
        """A refusal of a request sent at ``sent``/s since the last cut: cut once."""
        now = self.clock()
        # Refused while probing near the known ceiling: the limit is about here, and the
        # next probe waits twice as long.
        near = self.ceiling and sent >= SAFE * self.ceiling * 0.999
        self.probes = min(self.probes + 1, MAX_PROBES) if near else 0
        window = max(WINDOW, WINDOW_TURNS / sent)
        accepted = delivered(self._done, now, window=window)
        if accepted is not None and accepted < BACKOFF * sent:
            # The server takes far less than is sent (a batch that started well above the
            # account's limit): straight to just under what it takes, not halving there.
            self.ceiling = max(self.floor, accepted)
            rate = SAFE * accepted
        elif near:
            self.ceiling = sent
            rate = sent * NEAR_BACKOFF
        else:
            # Refused on the way up to the ceiling, the limit is lower than it says: the
            # new ceiling goes below this refusal too (CUBIC's fast convergence), so the
            # climb does not race past the limit again.
            fell = self.ceiling and sent < self.ceiling
            self.ceiling = sent * (1 + BACKOFF) / 2 if fell else sent
            rate = sent * BACKOFF
        self.rate = max(self.floor, min(rate, self.target))
        self._updated = now
        self._rate_epoch += 1
        # The next request waits a full interval at the new rate from now.
        self._last = max(self._last, now)

    def _too_many(self, in_flight: int) -> None:
        """A 50430 for a request that went out with ``in_flight`` in the air, itself included."""
        if in_flight > self.slots:
            return  # it went out before the cap was lowered
        if self.slot_ceiling and in_flight >= self.slot_ceiling:
            self.slot_probes = min(self.slot_probes + 1, MAX_PROBES)
        else:
            self.slot_probes = 0
        self.slot_ceiling = in_flight
        self.slots = max(1, in_flight - 1)
        self._slot_since = self.clock()
