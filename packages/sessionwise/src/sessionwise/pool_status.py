"""A snapshot of the connection pool, for readiness endpoints and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.pool import Pool, QueuePool

__all__ = ["PoolStatus", "read_pool_status", "waiting_in"]


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """Pool counters. ``waiting`` counts sessions blocked on a checkout right now."""

    size: int
    checked_out: int
    overflow: int
    waiting: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: PoolStatus) -> PoolStatus:
        return PoolStatus(
            size=self.size + other.size,
            checked_out=self.checked_out + other.checked_out,
            overflow=self.overflow + other.overflow,
            waiting=self.waiting + other.waiting,
        )


def waiting_in(pool: QueuePool) -> int:
    """Sessions blocked in the pool's own queue for a connection right now."""
    # SQLAlchemy keeps no public waiter count; AsyncAdaptedQueue wraps an asyncio.Queue whose
    # pending getters are the waiters. Best effort: 0 if the internals ever change.
    # vars() rather than getattr(): _queue is created lazily and must not be created here.
    queue: Any = vars(getattr(pool, "_pool", object)).get("_queue")
    getters = getattr(queue, "_getters", None)
    return sum(1 for waiter in getters if not waiter.done()) if getters else 0


def read_pool_status(pool: Pool) -> PoolStatus:
    if isinstance(pool, QueuePool):
        return PoolStatus(
            size=pool.size(),
            checked_out=pool.checkedout(),
            overflow=max(0, pool.overflow()),
            waiting=waiting_in(pool),
        )
    return PoolStatus(size=0, checked_out=0, overflow=0, waiting=0)
