"""Fault injection: marker words in request bodies, seeded dice, and the rate limiters.

A marker is ``volccli-fault:<name>`` anywhere in the body text, optionally with ``xN``
(``volccli-fault:50429x2``) so that it fires only the first N times the same body is
seen. That lets a test send one request twice and check that the retry succeeds.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .. import codes

MARKER_PREFIX: Final = "volccli-fault:"
_MARKER_RE: Final = re.compile(re.escape(MARKER_PREFIX) + r"([A-Za-z0-9=._-]+)")
_REPEAT_RE: Final = re.compile(r"(.+?)x(\d+)")
_SLEEP_RE: Final = re.compile(r"sleep=(\d+(?:\.\d+)?)")
MAX_MARKER_SLEEP: Final = 600.0

INVALID_INPUT: Final = 50215
ACCESS_DENIED: Final = 50400
QPS_LIMIT: Final = 50429
CONCURRENCY_LIMIT: Final = 50430
INTERNAL_ERROR: Final = 50500

# The messages the service puts in the envelope (reference B.3), not volccli's wording.
MESSAGES: Final[dict[int, str]] = {
    50215: "Input invalid for this service.",
    50400: "Access Denied: Internal Error",
    50411: "Pre Img Risk Not Pass",
    50412: "Text Risk Not Pass",
    50413: "Post Text Risk Not Pass",
    50429: "Request Has Reached API Limit, Please Try Later",
    50430: "Request Has Reached API Concurrent Limit, Please Try Later",
    50500: "Internal Error",
    50501: "Internal RPC Error",
    50511: "Post Img Risk Not Pass",
    50512: "Post Text Risk Not Pass",
    50513: "Pre Video Risk Not Pass",
    50514: "Pre Audio Risk Not Pass",
    50516: "Post Video Risk Not Pass",
    50517: "Post Audio Risk Not Pass",
    50518: "Pre Img Risk Not Pass: Copyright",
    50519: "Post Img Risk Not Pass: Copyright",
    50520: "Risk Internal Error",
    50521: "Antidirt Internal Error",
    50522: "Image Copyright Internal Error",
}
MARKER_CODES: Final = frozenset(codes.BUSINESS) | frozenset(MESSAGES)

# Markers that change how a successful answer is delivered or what it contains.
HTTP_MARKERS: Final = frozenset({"502", "503", "504"})
TRANSPORT_MARKERS: Final = frozenset({"drop", "truncate", "malformed-json", "trickle"})
RESULT_MARKERS: Final = frozenset({"bad-base64", "not-image", "expired-url"})
OTHER_MARKERS: Final = frozenset({"401relay"})
NAMED_MARKERS: Final = HTTP_MARKERS | TRANSPORT_MARKERS | RESULT_MARKERS | OTHER_MARKERS
# Markers whose request counts as billed: the work was done, only the answer was spoiled.
BILLED_MARKERS: Final = TRANSPORT_MARKERS | RESULT_MARKERS


def http_status(code: int) -> int:
    """The HTTP status the service answers a business code with."""
    if code in (QPS_LIMIT, CONCURRENCY_LIMIT):
        return 429
    if 50500 <= code < 50510:
        return 500
    return 400


def message(code: int) -> str:
    return MESSAGES.get(code, "Internal Error")


@dataclass(frozen=True)
class Marker:
    name: str  # "50412", "drop", "sleep=1.5", ...
    limit: int | None = None  # fire only the first N times the body is seen
    sleep: float = 0.0

    @property
    def code(self) -> int | None:
        return int(self.name) if self.name.isdigit() and int(self.name) in MARKER_CODES else None

    @property
    def billed(self) -> bool:
        return self.name in BILLED_MARKERS


def _known(name: str) -> Marker | None:
    sleep = _SLEEP_RE.fullmatch(name)
    if sleep:
        return Marker(name, sleep=min(float(sleep.group(1)), MAX_MARKER_SLEEP))
    if name in NAMED_MARKERS or (name.isdigit() and int(name) in MARKER_CODES):
        return Marker(name)
    return None


def find_markers(text: str) -> list[Marker]:
    """Every known marker in ``text``, in order; unknown names are ignored."""
    found: list[Marker] = []
    for match in _MARKER_RE.finditer(text):
        token = match.group(1).rstrip(".-")
        marker = _known(token)
        if marker is None:
            repeat = _REPEAT_RE.fullmatch(token)
            base = _known(repeat.group(1)) if repeat else None
            if base is not None and repeat is not None:
                marker = Marker(base.name, int(repeat.group(2)), base.sleep)
        if marker is not None:
            found.append(marker)
    return found


class MarkerBook:
    """How many times each (body, marker) pair was seen, for the ``xN`` suffix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], int] = {}

    def fires(self, body_sha256: str, marker: Marker) -> bool:
        if marker.limit is None:
            return True
        key = (body_sha256, marker.name)
        with self._lock:
            count = self._seen.get(key, 0) + 1
            self._seen[key] = count
        return count <= marker.limit

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


class Dice:
    """Seeded random draws for the fault rates, so a run with one seed repeats itself."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def uniform(self, lo: float, hi: float) -> float:
        if hi <= lo:
            return lo
        with self._lock:
            return self._random.uniform(lo, hi)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._random.seed(seed)


class TokenBucket:
    """QPS limit: ``rate`` tokens a second, at most ``rate`` stored (the burst).

    The rate is read on every call so a live change of the ``qps`` knob applies at once.
    """

    def __init__(
        self, rate: Callable[[], float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: float | None = None
        self._last = 0.0

    def take(self) -> float | None:
        """Take a token; None when granted, else the seconds until one is free."""
        rate = self._rate()
        if rate <= 0:
            return None
        burst = max(1.0, rate)
        now = self._clock()
        with self._lock:
            if self._tokens is None:
                self._tokens = burst
            else:
                self._tokens = min(burst, self._tokens + (now - self._last) * rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / rate

    def reset(self) -> None:
        with self._lock:
            self._tokens = None


def retry_after_header(wait: float) -> str:
    """Retry-After in whole seconds, at least 1 (a 0 would invite an instant retry)."""
    return str(max(1, math.ceil(wait)))


class InFlight:
    """Counts API requests being handled, and the most ever seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.max_seen = 0

    def enter(self) -> int:
        with self._lock:
            self.current += 1
            self.max_seen = max(self.max_seen, self.current)
            return self.current

    def leave(self) -> None:
        with self._lock:
            self.current -= 1

    def reset(self) -> None:
        with self._lock:
            # Requests still being handled will call leave(): keep counting them.
            self.max_seen = self.current


def sleep_for(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
