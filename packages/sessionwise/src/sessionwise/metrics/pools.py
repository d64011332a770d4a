"""A pool's meter: SQLAlchemy's pool events feed create and use time; gauges read on scrape.

Installed from outside the pool, as OpenTelemetry's contrib instrumentations do: listeners
on the engine's dialect and pool events, nothing in the checkout path itself.

* create time: from the dialect's ``do_connect`` (the driver is about to connect) to the
  pool's ``connect`` (the new connection is ready, its connect hooks run);
* use time: from the pool's ``checkout`` to its ``checkin``;
* wait time is a session's (`sessionwise.metrics.sessions`): from its first IO call, before
  it queues for a turn (`sessionwise.pool_turns`) or for SQLite's writer, to the ``checkout``
  of its connection;
* statements: counted per checked-out connection for the session that holds it, for the
  slow-session warning.

Counting costs a few dictionary operations per checkout and one per statement; no round
trip.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from sessionwise.metrics.recorder import MetricsRecorder, PoolReading
from sessionwise.pool_status import waiting_in
from sessionwise.pool_turns import PoolTurns

__all__ = ["CHECKED_OUT_AT", "HELD_BY", "PoolMeter", "instrument_pool"]

_CONNECTING_AT = "sessionwise.metrics.connecting_at"
CHECKED_OUT_AT = "sessionwise.metrics.checked_out_at"
# The `SessionRecord` of the session holding the connection (set by that session's meter).
HELD_BY = "sessionwise.metrics.held_by"


class PoolMeter:
    """The meter of one pool, known to its recorder by *pool_name*."""

    def __init__(
        self,
        engine: AsyncEngine,
        pool_name: str,
        recorder: MetricsRecorder,
        turns: PoolTurns | None = None,
    ) -> None:
        self.engine = engine
        self.pool_name = pool_name
        self.recorder = recorder
        self._turns = turns

    def read(self) -> PoolReading:
        pool = self.engine.pool
        waiting = self._turns.waiting if self._turns is not None else 0
        if not isinstance(pool, QueuePool):
            return PoolReading(idle=0, used=0, max=0, pending_requests=waiting)  # no pool to read
        # QueuePool keeps its overflow limit private; -1 there means "unlimited" (as 0 max).
        overflow = max(getattr(pool, "_max_overflow", 0), 0)
        return PoolReading(
            idle=pool.checkedin(),
            used=pool.checkedout(),
            max=pool.size() + overflow,
            pending_requests=waiting + waiting_in(pool),
        )

    # -- the listeners ----------------------------------------------------------------------

    def _connecting(self, _dialect: Any, record: ConnectionPoolEntry, *_args: Any) -> None:
        record.info[_CONNECTING_AT] = perf_counter()

    def _connected(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        started = record.info.pop(_CONNECTING_AT, None)
        if started is not None:
            self.recorder.connection_created(self.pool_name, perf_counter() - started)

    def _checked_out(
        self, _dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        record.info[CHECKED_OUT_AT] = perf_counter()

    def _checked_in(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        info = record.info
        info.pop(HELD_BY, None)
        checked_out = info.pop(CHECKED_OUT_AT, None)
        if checked_out is not None:
            self.recorder.connection_used(self.pool_name, perf_counter() - checked_out)

    def _statement(self, connection: Any, *_args: Any) -> None:
        holder = connection.info.get(HELD_BY)
        if holder is not None:
            holder.statements += 1


def instrument_pool(
    engine: AsyncEngine,
    pool_name: str,
    recorder: MetricsRecorder,
    *,
    turns: PoolTurns | None = None,
) -> PoolMeter:
    """Meter *engine*'s pool as *pool_name*: any pool, primary, read or replica.

    *turns* is sessionwise's line for the pool's connections, if it has one: the sessions
    waiting in it count as pending requests.
    """
    meter = PoolMeter(engine, pool_name, recorder, turns)
    sync_engine = engine.sync_engine
    # First among do_connect listeners: one that returns a connection ends the chain.
    event.listen(sync_engine, "do_connect", meter._connecting, insert=True)
    event.listen(sync_engine, "connect", meter._connected)
    event.listen(sync_engine, "checkout", meter._checked_out)
    event.listen(sync_engine, "checkin", meter._checked_in)
    event.listen(sync_engine, "before_cursor_execute", meter._statement)
    recorder.watch_pool(pool_name, meter.read)
    return meter
