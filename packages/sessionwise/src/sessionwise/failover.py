"""Keep writes on the current primary across a failover: throw away connections to a standby.

After a failover the old primary often comes back as a hot standby at the same address. A
pool that reaches it (a single host name that DNS, a VIP or a proxy moves; PgBouncer's
server connections) holds connections that pass every liveness check (a pre-ping ``SELECT 1``
succeeds on a standby) and refuse every write with SQLSTATE 25006
(read_only_sql_transaction), for as long as the process lives (gpustack#6105, CrunchyData
postgres-operator#3322). Two guards, each at no cost to a healthy request:

* the primary's pools connect with ``target_session_attrs=primary`` unless the URL chooses
  (`sessionwise.postgres`): asyncpg skips a server that reports ``in_hot_standby=on`` and
  tries the next host, so the pool never hands out a connection to a standby;
* a write that answers 25006 on a connection whose server reports that it refuses writes by
  default (``in_hot_standby`` or ``default_transaction_read_only`` on, PostgreSQL 14+ reports
  both at startup and on change) marks that connection as a disconnect: SQLAlchemy throws it
  away, and the error reaches the caller with ``connection_invalidated`` set, which
  `sessionwise.errors` classifies as unavailable (503 with ``Retry-After`` in FastAPI). The
  statement is not retried: its client decides, as for any outage. The whole pool is
  invalidated with it, because its other connections went to the same server: otherwise
  each of them would fail one request before it is replaced (sqlalchemy#11565).

A 25006 in a transaction that is read-only on purpose (`Database.read_session`'s ``READ
ONLY`` transaction, the test plugin's ``SET LOCAL transaction_read_only``) on a server that
takes writes is the application's bug, not a demotion, and stays one: the server reports
nothing read-only then.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from sessionwise.errors import READ_ONLY_SQL_TRANSACTION, sqlstate

__all__ = ["discard_connections_to_standbys"]

# The execution option SQLAlchemy's PostgreSQL dialects begin a READ ONLY transaction for.
_READ_ONLY_OPTION = "postgresql_readonly"
# Reported settings that make every transaction of the session read-only.
_REFUSES_WRITES = ("in_hot_standby", "default_transaction_read_only")


def _read_only_on_purpose(context: ExceptionContext) -> bool:
    options: dict[str, object] = {}
    if context.connection is not None:
        options.update(context.connection.get_execution_options())
    if context.execution_context is not None:
        options.update(context.execution_context.execution_options)
    return bool(options.get(_READ_ONLY_OPTION))


def _server_refuses_writes(context: ExceptionContext) -> bool:
    # What the server reported on this connection (asyncpg keeps each ParameterStatus).
    if context.connection is None:
        return False
    try:
        driver: Any = context.connection.connection.driver_connection
        settings = driver.get_settings()
    except Exception:  # no driver connection left to ask: nothing to discard either
        return False
    reported = (getattr(settings, name, None) for name in _REFUSES_WRITES)
    return "on" in reported


def discard_connections_to_standbys(engine: AsyncEngine) -> None:
    """Treat a 25006 from a server that refuses writes by default as a lost connection."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        if error is None or sqlstate(error) != READ_ONLY_SQL_TRANSACTION:
            return
        if _read_only_on_purpose(context) or not _server_refuses_writes(context):
            return
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = True
