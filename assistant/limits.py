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
