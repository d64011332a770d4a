"""The PostgreSQL (asyncpg) profile: server settings, timeouts and the PgBouncer mode."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sessionwise.config import DatabaseConfig

__all__ = ["install_postgres_profile", "postgres_engine_options"]


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _timeout_settings(config: DatabaseConfig) -> dict[str, str]:
    settings: dict[str, str] = {}
    if config.statement_timeout is not None:
        settings["statement_timeout"] = _milliseconds(config.statement_timeout)
    if config.idle_in_transaction_timeout is not None:
        settings["idle_in_transaction_session_timeout"] = _milliseconds(
            config.idle_in_transaction_timeout
        )
    return settings


def _unique_statement_name() -> str:
    return f"__sessionwise_{uuid.uuid4().hex}__"


def postgres_engine_options(config: DatabaseConfig) -> dict[str, Any]:
    """`create_async_engine` keyword arguments for asyncpg."""
    server_settings = {"application_name": config.application_name}
    connect_args: dict[str, Any] = {"server_settings": server_settings}
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
    else:
        # PgBouncer refuses unknown startup parameters, so there the timeouts are set per
        # transaction instead (install_postgres_profile).
        server_settings.update(_timeout_settings(config))
    options: dict[str, Any] = {
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": config.pool_timeout,
        "pool_pre_ping": config.pool_pre_ping,
        "connect_args": connect_args,
    }
    if config.pool_recycle is not None:
        options["pool_recycle"] = config.pool_recycle
    return options


def install_postgres_profile(engine: AsyncEngine, config: DatabaseConfig) -> None:
    """Behind PgBouncer, apply the timeouts with SET LOCAL at the start of each transaction."""
    settings = _timeout_settings(config)
    if not (config.pgbouncer and settings):
        return
    statements = [f"SET LOCAL {name} = {value}" for name, value in settings.items()]

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        for statement in statements:
            connection.exec_driver_sql(statement)
