"""The adaptive limiter on an injected clock: spacing, cuts, the climb, concurrency.

The pure parts (``climb``, ``delivered``) are checked directly; the limiter's rate over
time is checked against a simulated account (a token bucket on the same fake clock, like
the sandbox's), one request after the other.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from volccli.ratelimit import (
    BEYOND,
    CLIMB,
    PROBE,
    SAFE,
    SLOT_HOLD,
    AdaptiveLimiter,
    climb,
    delivered,
)

T = TypeVar("T")


class FakeClock:
    """Time that moves only when someone sleeps; safe to share between threads."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


def limiter(qps: float, **kwargs: object) -> tuple[AdaptiveLimiter, FakeClock]:
    clock = FakeClock()
    return AdaptiveLimiter(qps, clock=clock, sleep=clock.sleep, **kwargs), clock  # type: ignore[arg-type]  # test kwargs


def start_times(lim: AdaptiveLimiter, clock: FakeClock, n: int) -> list[float]:
    """When each of n back-to-back requests goes out."""
    times = []
    for _ in range(n):
        lim.acquire()
        times.append(clock())
        lim.release()
    return times


@dataclass
class Account:
    """The account's QPS limit: a token bucket of ``rate`` a second, ``rate`` stored at most."""

    rate: float
    clock: Callable[[], float]
    tokens: float = field(init=False)
    last: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = max(1.0, self.rate)

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def run_against(
    lim: AdaptiveLimiter, clock: FakeClock, account: Account, seconds: float
) -> list[tuple[float, bool]]:
    """Send one request after the other for ``seconds``: (time sent, accepted) each."""
    sent = []
    while clock() < seconds:
        lim.acquire()
        at = clock()
        accepted = account.take()
        if accepted:
            lim.release()
            lim.succeeded()
        else:
            lim.rate_limited(50429)
            lim.release()
        sent.append((at, accepted))
    return sent


def accepted_between(sent: list[tuple[float, bool]], start: float, end: float) -> int:
    return sum(1 for at, ok in sent if ok and start <= at < end)


def refused_between(sent: list[tuple[float, bool]], start: float, end: float) -> int:
    return sum(1 for at, ok in sent if not ok and start <= at < end)


class Worker:
    """One thread of its own, as a batch worker is: the limiter keeps per-thread tickets."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)

    def __call__(self, fn: Callable[[], T]) -> T:
        return self.pool.submit(fn).result(timeout=5)

    def close(self) -> None:
        self.pool.shutdown()


@pytest.fixture
def workers() -> list[Worker]:
    made = [Worker() for _ in range(3)]
    yield made  # type: ignore[misc]  # a generator fixture
    for worker in made:
        worker.close()


# --- the pure parts -------------------------------------------------------------------


def test_the_climb_is_quick_below_the_ceiling_then_slow_across_it() -> None:
    quick = climb(5.0, 1.0, ceiling=10.0, target=20.0, probes=0)
    assert quick == pytest.approx(5.0 + CLIMB * 10.0)
    # From half the ceiling to SAFE of it takes (SAFE - 0.5) / CLIMB seconds...
    to_safe = (SAFE - 0.5) / CLIMB
    assert climb(5.0, to_safe, ceiling=10.0, target=20.0, probes=0) == pytest.approx(9.0)
    # ...and a second more there gains only the probe's step.
    after = climb(5.0, to_safe + 1.0, ceiling=10.0, target=20.0, probes=0)
    assert after == pytest.approx(9.0 + PROBE * 10.0)


def test_every_refused_probe_halves_the_pace_of_the_next() -> None:
    gains = [climb(9.0, 1.0, ceiling=10.0, target=20.0, probes=n) - 9.0 for n in range(4)]
    assert gains == pytest.approx([PROBE * 10.0 / 2**n for n in range(4)])


def test_well_past_the_ceiling_the_rate_grows_back_to_the_target_and_stops() -> None:
    beyond = BEYOND * 10.0
    assert climb(beyond, 1.0, ceiling=10.0, target=100.0, probes=3) == pytest.approx(beyond * 1.1)
    assert climb(beyond, 60.0, ceiling=10.0, target=100.0, probes=3) == 100.0
    assert climb(2.0, 1e9, ceiling=10.0, target=100.0, probes=0) == 100.0  # no overflow
    assert climb(20.0, 5.0, ceiling=10.0, target=20.0, probes=0) == 20.0


def test_the_climb_crosses_every_zone_in_one_step() -> None:
    # 4 s quick (5 -> 9), 10 s probing (9 -> 11), then 10 % a second.
    rate = climb(5.0, 4.0 + 10.0 + 2.0, ceiling=10.0, target=100.0, probes=0)
    assert rate == pytest.approx(11.0 * 1.1**2)


def test_delivered_reads_the_rate_between_the_first_and_last_success() -> None:
    times = [10.0 + 0.5 * n for n in range(5)]  # 2/s over the last two seconds
    assert delivered(times, 12.1) == pytest.approx(2.0)
    assert delivered([0.0, 1.0, *times], 12.1) == pytest.approx(2.0)  # older ones ignored


def test_delivered_knows_nothing_from_too_few_or_a_burst() -> None:
    assert delivered([], 5.0) is None
    assert delivered([4.0, 4.9], 5.0) is None  # two successes are not a rate
    assert delivered([4.0, 4.1, 4.2, 4.3, 4.4], 5.0) is None  # a burst within a second


# --- spacing --------------------------------------------------------------------------


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


def test_zero_qps_never_sleeps_and_ignores_429() -> None:
    lim, clock = limiter(0)
    start_times(lim, clock, 50)
    lim.rate_limited(50429)
    start_times(lim, clock, 5)
    assert clock.sleeps == []
    assert lim.throttled == 1 and not lim.throttling


def test_threads_go_out_evenly_spaced() -> None:
    lim, clock = limiter(20)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            lim.acquire()
            with lock:
                starts.append(clock())
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


# --- cuts -----------------------------------------------------------------------------


def test_a_first_429_halves_the_rate_and_the_next_request_waits_a_new_interval() -> None:
    lim, clock = limiter(10)
    lim.acquire()
    lim.rate_limited(50429)
    lim.release()
    assert lim.rate == 5 and lim.ceiling == 10 and lim.throttling
    before = clock()
    lim.acquire()
    assert clock() - before == pytest.approx(0.2)


def test_refusals_of_requests_sent_before_a_cut_do_not_cut_again(workers: list[Worker]) -> None:
    lim, _clock = limiter(8)
    a, b, c = workers
    a(lim.acquire)
    b(lim.acquire)
    a(lambda: lim.rate_limited(50429))  # cut to 4/s
    b(lambda: lim.rate_limited(429))  # sent at 8/s too: no news
    assert lim.rate == 4 and lim.throttled == 2
    a(lim.release)
    b(lim.release)
    c(lim.acquire)  # sent at about 4/s (it climbed a little meanwhile) and refused
    c(lambda: lim.rate_limited(None))
    assert 2 <= lim.rate < 2.2  # a second cut


def test_the_rate_never_drops_below_the_floor() -> None:
    lim, _clock = limiter(8, floor=0.5)
    for _ in range(10):
        lim.acquire()
        lim.rate_limited(50429)
        lim.release()
    assert lim.rate == 0.5
    assert lim.throttled == 10


def test_a_batch_far_above_the_limit_goes_straight_to_what_the_server_takes() -> None:
    lim, clock = limiter(100)
    for _ in range(9):  # three seconds at 3/s got through
        lim.acquire()
        lim.release()
        lim.succeeded()
        clock.now += 1 / 3
    lim.acquire()
    lim.rate_limited(50429)
    lim.release()
    assert lim.ceiling == pytest.approx(3.0, rel=0.02)
    assert lim.rate == pytest.approx(SAFE * 3.0, rel=0.02)


# --- the rate over time against an account ---------------------------------------------


@pytest.mark.parametrize(("target", "limit"), [(20.0, 2.0), (50.0, 5.0), (10.0, 1.0), (6.0, 5.0)])
def test_the_rate_settles_just_under_the_accounts_limit(target: float, limit: float) -> None:
    lim, clock = limiter(target)
    sent = run_against(lim, clock, Account(limit, clock), 300.0)
    # The first burst finds the limit within a few refusals...
    assert refused_between(sent, 0, 10) <= 8
    # ...after which refusals are rare, and rarer the longer the batch runs,
    assert refused_between(sent, 10, 100) <= 5
    assert refused_between(sent, 100, 300) <= 3
    # while the batch gets nearly all the account allows.
    assert accepted_between(sent, 10, 300) >= 0.85 * limit * 290
    assert accepted_between(sent, 100, 300) >= 0.88 * limit * 200


def test_without_refusals_the_rate_stays_at_the_configured_one() -> None:
    lim, clock = limiter(5)
    sent = run_against(lim, clock, Account(50, clock), 20.0)
    assert all(ok for _, ok in sent)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sent)]
    assert gaps == pytest.approx([0.2] * len(gaps))
    assert not lim.throttling and lim.rate == 5


def test_after_the_account_limit_rises_the_rate_climbs_back_to_the_target() -> None:
    lim, clock = limiter(20)
    account = Account(2, clock)
    run_against(lim, clock, account, 60.0)
    assert lim.rate < 3
    account.rate = 100
    sent = run_against(lim, clock, account, 180.0)
    assert all(ok for at, ok in sent if at > 60)
    assert lim.rate == 20 and not lim.throttling


def test_after_the_account_limit_falls_the_rate_follows() -> None:
    lim, clock = limiter(20)
    account = Account(10, clock)
    run_against(lim, clock, account, 60.0)
    account.rate = 2
    sent = run_against(lim, clock, account, 160.0)
    assert refused_between(sent, 60, 160) <= 10
    assert 0.8 * 2 <= accepted_between(sent, 80, 160) / 80 <= 2.05


# --- concurrency ----------------------------------------------------------------------


def test_a_50430_caps_requests_in_flight_below_the_refused_count(workers: list[Worker]) -> None:
    lim, _clock = limiter(0, max_in_flight=8)
    a, b, c = workers
    a(lim.acquire)
    b(lim.acquire)
    c(lim.acquire)  # went out with 3 in flight
    c(lambda: lim.rate_limited(50430))
    assert lim.slots == 2 and lim.slot_ceiling == 3
    assert lim.rate == 0 and lim.throttling  # the rate is not what was refused
    for worker in (a, b, c):
        worker(lim.release)


def test_a_50430_sent_under_a_higher_cap_is_no_news(workers: list[Worker]) -> None:
    lim, _clock = limiter(0, max_in_flight=8)
    a, b, c = workers
    for worker in workers:
        worker(lim.acquire)
    b(lambda: lim.rate_limited(50430))  # went out with 2 in flight: the cap becomes 1
    c(lambda: lim.rate_limited(50430))  # went out with 3: sent before that cut
    assert lim.slots == 1 and lim.slot_ceiling == 2
    for worker in (a, b, c):
        worker(lim.release)


def test_the_in_flight_cap_recovers_after_quiet_spells_that_double_per_refused_probe(
    workers: list[Worker],
) -> None:
    lim, clock = limiter(0, max_in_flight=4)
    a, b, c = workers
    a(lim.acquire)
    b(lim.acquire)
    b(lambda: lim.rate_limited(50430))  # 2 in flight refused: cap 1
    a(lim.release)
    b(lim.release)
    assert lim.slots == 1
    clock.now += SLOT_HOLD - 0.1
    lim.succeeded()
    assert lim.slots == 1  # not quiet long enough
    clock.now += 0.2
    lim.succeeded()
    assert lim.slots == 2  # the probe: 2 in flight again
    a(lim.acquire)
    b(lim.acquire)
    b(lambda: lim.rate_limited(50430))  # refused at 2 again
    a(lim.release)
    b(lim.release)
    assert lim.slots == 1 and lim.slot_probes == 1
    clock.now += SLOT_HOLD + 0.1
    lim.succeeded()
    assert lim.slots == 1  # now it waits twice as long
    clock.now += SLOT_HOLD
    lim.succeeded()
    assert lim.slots == 2
    for _ in range(3):  # past the refused count: back to the base pace up to the maximum
        clock.now += SLOT_HOLD + 0.1
        lim.succeeded()
    assert lim.slots == 4 and lim.slot_probes == 0 and not lim.throttling
    c(lambda: None)


def _second_acquire_waits_for_a_release(lim: AdaptiveLimiter) -> None:
    """With the one slot taken, another acquire blocks until the slot is released."""
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


def test_acquire_blocks_while_the_cap_is_reached() -> None:
    lim, _clock = limiter(0, max_in_flight=1)
    _second_acquire_waits_for_a_release(lim)
    assert lim.in_flight == 1


def test_a_rate_limited_head_waits_for_a_slot_too() -> None:
    lim, clock = limiter(100, max_in_flight=1)
    _second_acquire_waits_for_a_release(lim)
    assert lim.in_flight == 1 and clock() == pytest.approx(0.01)


def test_successes_are_counted_for_the_client() -> None:
    lim, clock = limiter(5, max_in_flight=2)
    sent = run_against(lim, clock, Account(50, clock), 2.0)
    assert lim.successes == len(sent)
