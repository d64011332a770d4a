"""How far behind each replica is, measured by WAL position, and whether it answers at all.

Every ``replica_check_interval`` seconds the monitor reads the primary's WAL insert position
and each replica's replay position (one autocommit statement per server, on connections of its
own, so a busy pool never makes a healthy replica look dead). Lag is then a time computed from
positions: a replica is as fresh as the newest primary sample whose position it has replayed,
and its lag is how long ago that sample was taken. A replica that has replayed everything is
0 behind however long the primary has been idle. The replay *timestamp* would not do:
``pg_last_xact_replay_timestamp()`` is the time of the last replayed commit, and grows without
bound while nothing commits (PostgreSQL docs, 9.27.4, "Recovery Information Functions").

A replica counts as healthy when its last check answered within the timeout, it is still in
recovery (a promoted replica is a primary now, not a place for routed reads) and its lag is
within ``replica_max_lag``. A failed connection found by a read marks it down at once, without
waiting for the next check; the next check that answers brings it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sessionwise.replicas.positions import (
    PRIMARY_POSITION_SQL,
    REPLICA_POSITION_SQL,
    WalPosition,
)

__all__ = ["LagMonitor", "Replica", "ReplicaStatus"]

logger = logging.getLogger("sessionwise.replicas")
_PRIMARY_POSITION = text(f"SELECT {PRIMARY_POSITION_SQL}")
_REPLICA_POSITION = text(REPLICA_POSITION_SQL)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What the monitor last saw of one replica (`Database.replica_status`).

    Attributes:
        url: The replica's URL, password hidden.
        healthy: Whether reads are routed to it now.
        lag: Seconds behind the primary by WAL position (None: not known yet, or down).
        replayed: The WAL position it had replayed at the last check (None: not known).
        problem: Why it is not healthy (None when it is).
    """

    url: str
    healthy: bool
    lag: float | None
    replayed: WalPosition | None
    problem: str | None


class Replica:
    """One replica: its engine for reads, its probe engine, and what the monitor knows."""

    def __init__(self, url: str, engine: AsyncEngine, probe: AsyncEngine) -> None:
        self.url = url
        self.shown_url = make_url(url).render_as_string(hide_password=True)
        self.engine = engine
        self.probe = probe
        self.replayed: int | None = None  # LSN replayed at the last good check
        self.lag: float | None = None
        self.problem: str | None = "not checked yet"

    @property
    def healthy(self) -> bool:
        return self.problem is None

    def mark_down(self, problem: str) -> None:
        """Take it out of routing until a check answers again (a read could not connect)."""
        if self.problem is None:
            logger.warning("replica %s skipped: %s", self.shown_url, problem)
        self.problem = problem
        self.lag = None

    def status(self) -> ReplicaStatus:
        replayed = WalPosition(self.replayed) if self.replayed is not None else None
        return ReplicaStatus(self.shown_url, self.healthy, self.lag, replayed, self.problem)


class LagMonitor:
    """Samples the primary and every replica, and keeps each replica's health and lag."""

    def __init__(
        self,
        primary_probe: AsyncEngine,
        replicas: list[Replica],
        *,
        max_lag: float,
        interval: float,
        timeout: float,
    ) -> None:
        self._primary = primary_probe
        self._replicas = replicas
        self._max_lag = max_lag
        self._interval = interval
        self._timeout = timeout
        # (monotonic time, primary WAL insert position), oldest first; long enough to tell
        # "behind by more than max_lag" from "behind by an unknown amount".
        self._history: deque[tuple[float, int]] = deque(maxlen=max(8, int(max_lag / interval) + 8))
        self._primary_problem: str | None = None

    async def run(self) -> None:
        """Check forever, every interval; never raises (cancel it to stop)."""
        while True:
            started = time.monotonic()
            await self.check()
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def check(self) -> None:
        """One round: the primary's position first, then every replica's, concurrently."""
        try:
            position = await self._scalar(self._primary, _PRIMARY_POSITION)
        except Exception as error:  # the primary's failures are the main pool's to report
            if self._primary_problem is None:
                logger.warning("replica monitor: primary position unknown (%s)", _why(error))
            self._primary_problem = _why(error)
        else:
            self._primary_problem = None
            self._history.append((time.monotonic(), int(position)))
        await asyncio.gather(*(self._check_replica(replica) for replica in self._replicas))

    def lag_of(self, replayed: int, now: float) -> float | None:
        """Seconds since the newest primary sample at or below *replayed* (None: none kept)."""
        as_of: float | None = None
        for sampled_at, position in reversed(self._history):
            if position <= replayed:
                as_of = sampled_at
                break
        return None if as_of is None else max(0.0, now - as_of)

    async def _check_replica(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                async with replica.probe.connect() as connection:
                    row = (await connection.execute(_REPLICA_POSITION)).one()
        except Exception as error:
            replica.mark_down(f"does not answer ({_why(error)})")
            return
        in_recovery, replayed = row
        if not in_recovery or replayed is None:
            replica.mark_down("is not in recovery (a primary, or promoted)")
            return
        replica.replayed = int(replayed)
        lag = self.lag_of(replica.replayed, time.monotonic())
        if lag is None:
            replica.mark_down("behind every primary position sampled (lag unknown)")
            return
        if lag > self._max_lag:
            replica.mark_down(f"{lag:.1f} s behind (replica_max_lag={self._max_lag:g})")
            replica.lag = lag
            return
        if replica.problem is not None:
            logger.info("replica %s used again (%.1f s behind)", replica.shown_url, lag)
        replica.problem = None
        replica.lag = lag

    async def _scalar(self, engine: AsyncEngine, statement: TextClause) -> Any:
        async with asyncio.timeout(self._timeout), engine.connect() as connection:
            return (await connection.execute(statement)).scalar_one()


def _why(error: BaseException) -> str:
    # The type only: driver messages can carry host names and SQL, not for every log line.
    return type(error).__name__
