"""Rate limits: how many times a key (a user, an address) may act within a sliding window.

Owns the counting only; what is limited, and the message a person sees, belong to the callers
(the chat service for messages, the web gate for login attempts). Kept in memory: a restart
forgets the counts, which errs on the side of letting people in.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class RateLimiter:
    """At most `limit` events per key within `window` seconds; `limit` 0 turns it off.

    >>> clock = iter([0.0, 1.0, 2.0, 61.5]).__next__
    >>> limiter = RateLimiter(2, 60, clock=clock)
    >>> [round(limiter.wait("ana"), 1) for _ in range(4)]
    [0.0, 0.0, 58.0, 0.0]
    """

    def __init__(self, limit: int, window: float, clock=time.monotonic):
        self.limit, self.window, self.clock = int(limit), float(window), clock
        self._events: dict[object, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, key) -> float:
        """Seconds until the key may act again (0: now), counting nothing."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            events = [t for t in self._events.get(key, ()) if t > now - self.window]
            return max(events[0] + self.window - now, 0.1) if len(events) >= self.limit else 0.0

    def wait(self, key) -> float:
        """0 and the event counted, or the seconds until the key may act again (not counted)."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return max(events[0] + self.window - now, 0.1)
            events.append(now)
            return 0.0


class Backoff:
    """Failed tries per key: the first `free` cost nothing, then each waits twice as long as
    the last (1 s, 2 s, 4 s ... at most `cap`) after the latest failure. A key quiet for
    `forget_s` starts afresh, and a success clears it.

    >>> now = [0.0]
    >>> b = Backoff(2, cap=8, forget_s=100, clock=lambda: now[0])
    >>> for _ in range(6): b.failed("ana")
    >>> b.retry_after("ana"), b.retry_after("bob")
    (8.0, 0.0)
    >>> now[0] = 5.0; b.retry_after("ana")
    3.0
    >>> now[0] = 200.0; b.retry_after("ana")
    0.0
    """

    def __init__(self, free: int, cap: float = 300.0, forget_s: float = 900.0, clock=None):
        self.free, self.cap, self.forget_s = int(free), float(cap), float(forget_s)
        self.clock = clock or time.monotonic
        self._failures: dict[object, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key) -> float:
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
        now = self.clock()
        if count <= self.free or now - last > self.forget_s:
            return 0.0
        wait = min(2.0 ** (count - self.free - 1), self.cap)
        return max(last + wait - now, 0.0)

    def failed(self, key) -> None:
        now = self.clock()
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
            if now - last > self.forget_s:
                count = 0
            self._failures[key] = (count + 1, now)
            if len(self._failures) > 100_000:  # forget the quietest
                oldest = min(self._failures, key=lambda k: self._failures[k][1])
                del self._failures[oldest]

    def clear(self, key) -> None:
        with self._lock:
            self._failures.pop(key, None)
