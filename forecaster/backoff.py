"""Exponential waits between attempts at something that keeps failing (a broker, a delivery).

>>> backoff = Backoff(longest=4.0, first=1.0)
>>> [backoff.failed() for _ in range(4)]
[1.0, 2.0, 4.0, 4.0]
>>> backoff.succeeded(); backoff.failed()
1.0
"""

from __future__ import annotations

import time
from dataclasses import dataclass

FIRST_WAIT_S = 0.5


@dataclass
class Backoff:
    """Exponential waits between attempts, from ``first`` up to ``longest`` seconds."""

    longest: float
    first: float = FIRST_WAIT_S
    delay: float = 0.0
    next_attempt: float = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_attempt

    def failed(self) -> float:
        """Record a failed attempt; returns the wait before the next one."""
        self.delay = min(max(2 * self.delay, self.first), self.longest)
        self.next_attempt = time.monotonic() + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.delay = self.next_attempt = 0.0
