"""The PostgreSQL (asyncpg) profile: server settings, timeouts and the PgBouncer mode."""

from __future__ import annotations

import os
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sessionwise.config import DatabaseConfig
from sessionwise.errors import UNABLE_TO_CONNECT
from sessionwise.liveness import install_pre_ping

__all__ = [
    "autocommit_reads",
    "install_postgres_profile",
    "postgres_engine_options",
    "read_engine_options",
]


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _timeout_settings(config: DatabaseConfig) -> dict[str, str]:
    settings: dict[str, str] = {}
    if config.statement_timeout is not None:
        settings["statement_timeout"] = _milliseconds(config.statement_timeout)
    if config.lock_timeout is not None:
        settings["lock_timeout"] = _milliseconds(config.lock_timeout)
    # Behind PgBouncer only when set explicitly: there it is a SET LOCAL per transaction
    # (see DatabaseConfig.idle_in_transaction_timeout).
    if config.idle_in_transaction_timeout is not None and (
        not config.pgbouncer or "idle_in_transaction_timeout" in config.model_fields_set
    ):
        settings["idle_in_transaction_session_timeout"] = _milliseconds(
            config.idle_in_transaction_timeout
        )
    return settings


class ConnectFailedError(AsyncAdapt_asyncpg_dbapi.OperationalError):
    """asyncpg found no server to use: refused, reset or timed out, or none a primary.

    asyncpg raises these as plain ``OSError`` / ``TimeoutError`` (or, when every host of a
    multi-host URL answered but none matched ``target_session_attrs``, as its own
    ``TargetServerAttributeNotMatched``, which carries no SQLSTATE), and SQLAlchemy's
    adapter translates only asyncpg's server errors (``_handle_exception_no_connection`` in
    ``sqlalchemy.dialects.postgresql.asyncpg``), so they would reach the application
    unwrapped or unclassified. Raised as a DBAPI error instead, SQLAlchemy wraps it in
    ``sqlalchemy.exc.OperationalError``, with SQLSTATE 08001
    (sqlclient_unable_to_establish_sqlconnection): `sessionwise.errors` calls it unavailable.
    """

    def __init__(self, error: BaseException, reason: str | None = None) -> None:
        # The driver's text stays on the chained exception, out of the message.
        message = f"could not connect to the server ({reason or type(error).__name__})"
        super().__init__(message, error)  # type: ignore[no-untyped-call]  # SQLAlchemy's
        self.pgcode = self.sqlstate = UNABLE_TO_CONNECT


async def _connect_asyncpg(*args: Any, **kwargs: Any) -> Any:
    """``asyncpg.connect()`` whose socket failures are DBAPI errors (``async_creator_fn``)."""
    import asyncpg  # type: ignore[import-untyped]  # late: the postgres extra is optional

    try:
        return await asyncpg.connect(*args, **kwargs)
    except (
        OSError,
        TimeoutError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.TargetServerAttributeNotMatched,
    ) as error:
        # ConnectionDoesNotExistError: the server closed the socket mid-handshake (shutting
        # down); it carries no SQLSTATE and SQLAlchemy sees no closed connection to flag.
        # TargetServerAttributeNotMatched: every host answered, none is (yet) a primary, as
        # during a failover's promotion.
        no_primary = isinstance(error, asyncpg.TargetServerAttributeNotMatched)
        reason = "no host matches target_session_attrs" if no_primary else None
        raise ConnectFailedError(error, reason) from error


def _creator(*, read_only: bool) -> Any:
    """The ``async_creator_fn`` of one pool: what a new connection must be before use."""
    if not read_only:
        return _connect_asyncpg

    async def connect(*args: Any, **kwargs: Any) -> Any:
        connection = await _connect_asyncpg(*args, **kwargs)
        try:
            # Read-only by SET after connecting, not by a startup parameter: asyncpg checks
            # target_session_attrs (read-write, primary) right after startup and rejects a
            # session whose default_transaction_read_only is on, on every host ("None of the
            # hosts match the target attribute requirement"). Set afterwards, the read pool
            # lands on the same primary as the writes (so reads see them) and the server
            # still refuses writes in every implicit transaction.
            await connection.execute("SET default_transaction_read_only = on")
        except BaseException:
            connection.terminate()
            raise
        return connection

    return connect


def _primary_only(config: DatabaseConfig) -> dict[str, str]:
    """``target_session_attrs=primary`` for the primary's pools, unless chosen already.

    A URL that does not say (one host name that a VIP, DNS or a proxy moves; several hosts
    listed for failover) can lead to a demoted primary that came back as a standby, whose
    connections pass every ping and refuse every write with 25006 (gpustack#6105). asyncpg
    then skips a standby, from the ``in_hot_standby`` it reports at startup (PostgreSQL 14+;
    older servers are asked), and tries the next host; with none left the connect fails as
    unavailable. Not behind PgBouncer: what it reports is its copy from its first server
    connection, which can be stale after a failover (pgbouncer#859).
    """
    if config.pgbouncer or config.url is None or os.environ.get("PGTARGETSESSIONATTRS"):
        return {}
    if "target_session_attrs" in make_url(config.url).query:
        return {}
    return {"target_session_attrs": "primary"}


def _unique_statement_name() -> str:
    return f"__sessionwise_{uuid.uuid4().hex}__"


def postgres_engine_options(
    config: DatabaseConfig, *, primary: bool = False, read_only: bool = False
) -> dict[str, Any]:
    """`create_async_engine` keyword arguments for asyncpg.

    Args:
        config: The pool, timeout and PgBouncer options.
        primary: The pool is the primary's (`Database` sets it for its own pools): it
            connects only to a server that is not a standby (see `_primary_only`). Off for
            pools that may use any server, such as replicas'.
        read_only: Every session of the pool is read-only (``default_transaction_read_only``
            set right after connecting).
    """
    server_settings = {"application_name": config.application_name}
    if not config.pgbouncer:
        # PgBouncer refuses unknown startup parameters, so there the timeouts are set per
        # transaction instead (install_postgres_profile).
        server_settings.update(_timeout_settings(config))
    connect_args: dict[str, Any] = {
        "server_settings": server_settings,
        "async_creator_fn": _creator(read_only=read_only),
        **(_primary_only(config) if primary else {}),
    }
    if config.pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection, so a
        # statement prepared on one is unknown on the next. Both caches off, and unique names
        # for the statements asyncpg still prepares (SQLAlchemy docs, "Using a Prepared
        # Statement Cache" / "Prepared Statement Name with PGBouncer").
        connect_args.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_unique_statement_name,
        )
    options: dict[str, Any] = {
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": config.pool_timeout,
        "pool_pre_ping": False,  # sessionwise.liveness does it, without a ping per checkout
        "connect_args": connect_args,
    }
    if config.pool_recycle is not None:
        options["pool_recycle"] = config.pool_recycle
    return options


def autocommit_reads(config: DatabaseConfig) -> bool:
    """Whether read sessions get the autocommit, read-only pool (see `read_engine_options`)."""
    return config.read_sessions == "autocommit" and not config.pgbouncer


def read_engine_options(config: DatabaseConfig, *, primary: bool = False) -> dict[str, Any]:
    """`create_async_engine` keyword arguments for the pool of autocommit read sessions.

    Autocommit for the engine's whole life (set once per connection, not per checkout), and
    ``default_transaction_read_only`` at connect, so that the server still refuses writes in
    the implicit transaction of every statement.
    """
    options = postgres_engine_options(config, primary=primary, read_only=True)
    options["pool_size"] = config.read_pool_size or config.pool_size
    options["isolation_level"] = "AUTOCOMMIT"
    return options


def _abort_queries_of_vanished_clients(engine: AsyncEngine, interval: float) -> None:
    # A session cancelled mid-query (a request timing out, an anyio cancel scope) closes its
    # connection: SQLAlchemy invalidates it on CancelledError. asyncpg's graceful close would
    # send a CancelRequest, but anyio re-delivers the cancellation to SQLAlchemy's shielded
    # close, which then falls back to terminate() and drops the pending CancelRequest. The
    # server only notices a closed socket between queries, so the query runs to its end.
    # client_connection_check_interval makes the backend poll the socket while it runs
    # (PostgreSQL docs, "Connection Settings"). SET after connecting rather than a startup
    # parameter: PostgreSQL < 14 refuses unknown startup parameters with a FATAL error.
    statement = f"SET client_connection_check_interval = {_milliseconds(interval)}"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection.driver_connection.get_server_version().major >= 14:
            dbapi_connection.run_async(lambda driver: driver.execute(statement))


def install_postgres_profile(engine: AsyncEngine, config: DatabaseConfig) -> None:
    """Register the connect and begin hooks on *engine*.

    The pre-ping (`sessionwise.liveness`) when ``pool_pre_ping`` is on. Without PgBouncer,
    each new connection gets ``client_connection_check_interval``. Behind
    PgBouncer, a session-level SET would leak to other clients of the server connection, so
    only the timeouts are applied, with SET LOCAL at the start of each transaction.
    """
    if config.pool_pre_ping:
        install_pre_ping(engine, config.pool_pre_ping_idle)
    if config.client_connection_check_interval is not None and not config.pgbouncer:
        _abort_queries_of_vanished_clients(engine, config.client_connection_check_interval)
    settings = _timeout_settings(config)
    if not (config.pgbouncer and settings):
        return
    statements = [f"SET LOCAL {name} = {value}" for name, value in settings.items()]

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        for statement in statements:
            connection.exec_driver_sql(statement)
