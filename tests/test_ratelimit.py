"""The adaptive limiter, on an injected clock: spacing, halving, recovery, concurrency."""

from __future__ import annotations

import itertools
import threading

import pytest

from volccli.ratelimit import SLOTS_RECOVERY, AdaptiveLimiter


class FakeClock:
    """Time that moves only when someone sleeps; safe to share between threads."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()
        self.sleeps: list[float] = []
        self.last: dict[int, float] = {}  # each thread's latest sleep

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.last[threading.get_ident()] = seconds


def limiter(qps: float, **kwargs: object) -> tuple[AdaptiveLimiter, FakeClock]:
    clock = FakeClock()
    return AdaptiveLimiter(qps, clock=clock, sleep=clock.sleep, **kwargs), clock  # type: ignore[arg-type]  # test kwargs


def start_times(lim: AdaptiveLimiter, clock: FakeClock, n: int) -> list[float]:
    """When each of n back-to-back requests would start (the clock never advances)."""
    times = []
    for _ in range(n):
        before = len(clock.sleeps)
        lim.acquire()
        waited = clock.sleeps[before] if len(clock.sleeps) > before else 0.0
        times.append(clock() + waited)
        lim.release()
    return times


def test_requests_are_spaced_evenly_at_the_rate() -> None:
    lim, clock = limiter(4)
    assert start_times(lim, clock, 5) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_no_waiting_when_the_clock_has_moved_on() -> None:
    lim, clock = limiter(2)
    lim.acquire()
    lim.release()
    clock.now = 10.0
    lim.acquire()
    assert clock.sleeps == []


def test_zero_qps_never_sleeps() -> None:
    lim, clock = limiter(0)
    start_times(lim, clock, 50)
    assert clock.sleeps == []
    lim.rate_limited(50429)
    start_times(lim, clock, 5)
    assert clock.sleeps == []


def test_a_429_halves_the_rate_once_per_interval_down_to_the_floor() -> None:
    lim, clock = limiter(8, floor=0.5)
    lim.rate_limited(50429)
    assert lim.rate == 4
    lim.rate_limited(429)  # the same burst answering: no second cut
    assert lim.rate == 4
    for _ in range(10):
        clock.now += 10
        lim.rate_limited(None)
    assert lim.rate == 0.5
    assert lim.throttled == 12


def test_after_a_cut_the_next_request_waits_a_full_new_interval() -> None:
    lim, clock = limiter(10)
    lim.acquire()
    lim.release()
    lim.rate_limited(50429)  # rate 5/s: the next start is 0.2 s from now
    before = len(clock.sleeps)
    lim.acquire()
    assert clock.sleeps[before:] == [pytest.approx(0.2)]


def test_successes_climb_back_to_the_configured_rate_and_no_further() -> None:
    lim, _clock = limiter(10)
    lim.rate_limited(50429)
    assert lim.rate == 5
    lim.succeeded()
    assert 5 < lim.rate < 10  # additive, not a jump back
    for _ in range(100):
        lim.succeeded()
    assert lim.rate == 10


def test_a_50430_lowers_the_in_flight_cap_and_successes_raise_it_again() -> None:
    lim, _clock = limiter(0, max_in_flight=4)
    for _ in range(3):
        lim.acquire()
    lim.rate_limited(50430)  # 3 in flight were too many: 2 are allowed
    assert lim.slots == 2
    assert lim.rate == 0  # the rate is not what was refused
    for _ in range(3):
        lim.release()
    for _ in range(SLOTS_RECOVERY):
        lim.succeeded()
    assert lim.slots == 3
    for _ in range(10 * SLOTS_RECOVERY):
        lim.succeeded()
    assert lim.slots == 4


def test_acquire_blocks_while_the_cap_is_reached() -> None:
    lim, _clock = limiter(0, max_in_flight=1)
    lim.acquire()
    entered = threading.Event()

    def second() -> None:
        lim.acquire()
        entered.set()

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    assert not entered.wait(0.2)
    lim.release()
    assert entered.wait(2)
    thread.join(2)
    assert lim.in_flight == 1


def test_threads_get_distinct_evenly_spaced_slots() -> None:
    lim, clock = limiter(20)
    starts: list[float] = []

    def worker() -> None:
        me = threading.get_ident()
        for _ in range(25):
            # The fake clock stands still, so each sleep is exactly the slot's offset.
            clock.last.pop(me, None)
            lim.acquire()
            starts.append(clock.last.get(me, 0.0))
            lim.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    starts.sort()
    assert len(starts) == 200
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.05] * 199)


def test_negative_qps_is_refused() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimiter(-1)
