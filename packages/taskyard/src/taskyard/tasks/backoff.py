"""When a failed attempt is tried again: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``base * 2 ** (n - 1)`` seconds after the *n*-th failed attempt, at most *cap*, less up
    to *jitter* of it at random.

    The jitter spreads the retries of tasks that failed together (a dependency that was down
    for everyone) instead of sending them back at the same instant; see "Exponential Backoff
    And Jitter", AWS Architecture Blog, 2015.
    """

    base: float = 10.0
    cap: float = 3600.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number *attempt* (1 is the first)."""
        # The exponent is bounded so that a large attempt number cannot overflow the float.
        full = min(self.cap, self.base * 2.0 ** min(attempt - 1, 60))
        return timedelta(seconds=full * (1.0 - self.jitter * random.random()))
