"""The pre-ping: hand out no connection the server has dropped, without a ping per checkout.

SQLAlchemy's ``pool_pre_ping`` pings on every checkout. On asyncpg that ping is three round
trips (``BEGIN``, an empty query, ``ROLLBACK``: the transaction keeps it working behind
PgBouncer, sqlalchemy#10226), more than the one query a typical request runs. Most of them
learn nothing: the server tells a client it is going away. A backend that is terminated or
shut down (``pg_terminate_backend``, a restart, a failover of the local server) sends its
error and closes the socket, and the driver marks its connection closed as soon as the event
loop reads that. So the check on checkout has two tiers:

* every checkout: has the driver seen the connection close? No round trip. A closed one is
  replaced at once by a new connection (SQLAlchemy's "checkout" event raising
  ``DisconnectionError``, the documented "pessimistic disconnect handling" pattern).
* a connection that sat in the pool longer than ``pool_pre_ping_idle`` seconds also gets a
  real ping: the cases no close message announces (a NAT or firewall dropping an idle flow,
  a server host that vanished) happen to connections that were idle. A failed ping
  invalidates the whole pool, as SQLAlchemy's own pre-ping does: its peers are likely dead
  as well.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

__all__ = ["install_pre_ping"]

_RETURNED_AT = "sessionwise.returned_at"


def _closed_by_server(dbapi_connection: Any) -> bool:
    # asyncpg's Connection.is_closed(): set once the protocol saw the socket close.
    is_closed = getattr(dbapi_connection.driver_connection, "is_closed", None)
    return bool(is_closed()) if callable(is_closed) else False


def install_pre_ping(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check connections on checkout: locally always, with a ping after *idle_seconds* idle.

    The engine must be created with ``pool_pre_ping=False``; this replaces it.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        returned_at = record.info.pop(_RETURNED_AT, None)
        if returned_at is None:
            return  # just connected
        if _closed_by_server(dbapi_connection):
            raise DisconnectionError("the server closed this pooled connection")
        if time.monotonic() - returned_at <= idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            stale = DisconnectionError(f"pooled connection failed its ping: {error}")
            stale.invalidate_pool = True
            raise stale from error
