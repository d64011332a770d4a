"""PostgreSQL that holds up: the profile's session settings, read back from the server.

Each test gives its `Database` a unique ``application_name`` and reads the settings with SHOW
inside a session, or the backends from ``pg_stat_activity`` over a separate connection.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sessionwise import Database, Failure, classify
from tests.support.pg_activity import backend_states
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


async def _show(db: Database, setting: str) -> str | None:
    async with db.session() as session:
        value = await session.scalar(text(f"SHOW {setting}"))
        return None if value is None else str(value)


async def test_application_name_is_visible_in_pg_stat_activity(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    async with Database(postgres_url, application_name=application_name) as db:
        async with db.session() as session:
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
            row = await pg_admin.fetchrow(
                "SELECT application_name, state FROM pg_stat_activity WHERE pid = $1", pid
            )
            assert row is not None
            assert row["application_name"] == application_name
            assert row["state"] == "idle in transaction"  # the session's open transaction
        assert await _show(db, "application_name") == application_name


async def test_default_application_name_is_sessionwise(postgres_url: str) -> None:
    async with Database(postgres_url) as db:
        assert await _show(db, "application_name") == "sessionwise"


async def test_configured_timeouts_are_applied(postgres_url: str) -> None:
    db = Database(
        postgres_url, statement_timeout=1.5, idle_in_transaction_timeout=30, lock_timeout=0.25
    )
    async with db:
        assert await _show(db, "statement_timeout") == "1500ms"
        assert await _show(db, "idle_in_transaction_session_timeout") == "30s"
        assert await _show(db, "lock_timeout") == "250ms"


async def test_unconfigured_statement_and_lock_timeouts_keep_the_server_defaults(
    postgres_url: str, pg_admin: asyncpg.Connection
) -> None:
    async with Database(postgres_url) as db:
        for setting in ("statement_timeout", "lock_timeout"):
            server_default = await pg_admin.fetchval(f"SHOW {setting}")
            assert await _show(db, setting) == server_default


async def test_idle_in_transaction_timeout_is_finite_by_default(postgres_url: str) -> None:
    # Issue 17.3: a transaction leaked mid-stream sat `idle in transaction` until the process
    # exited; the server default is off. (Changed from "keeps the server default".)
    async with Database(postgres_url) as db:
        assert await _show(db, "idle_in_transaction_session_timeout") == "1min"
    async with Database(postgres_url, idle_in_transaction_timeout=None) as db:
        assert await _show(db, "idle_in_transaction_session_timeout") == "0"


async def test_client_connection_check_interval_is_set_and_can_be_turned_off(
    postgres_url: str, pg_admin: asyncpg.Connection
) -> None:
    async with Database(postgres_url) as db:
        assert await _show(db, "client_connection_check_interval") == "1s"
    async with Database(postgres_url, client_connection_check_interval=None) as db:
        server_default = await pg_admin.fetchval("SHOW client_connection_check_interval")
        assert await _show(db, "client_connection_check_interval") == server_default


async def test_statement_past_statement_timeout_is_a_timeout_failure(postgres_url: str) -> None:
    async with Database(postgres_url, statement_timeout=0.1) as db:
        with pytest.raises(DBAPIError) as failed:
            async with db.session() as session:
                await session.scalar(text("SELECT pg_sleep(2)"))
        assert classify(failed.value) is Failure.TIMEOUT  # SQLSTATE 57014
        assert await _show(db, "statement_timeout") == "100ms"  # the pool's connection is fine


async def test_idle_in_transaction_timeout_ends_a_forgotten_transaction(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    db = Database(postgres_url, application_name=application_name, idle_in_transaction_timeout=0.3)
    async with db:

        async def forget_transaction() -> None:
            async with db.session() as session:
                await session.scalar(text("SELECT 1"))
                # The transaction sits idle (say, awaiting a slow HTTP call) past the timeout:
                # the server ends the backend rather than keep its locks and snapshot.
                await wait_until(lambda: _no_backends(pg_admin, application_name))
                await session.scalar(text("SELECT 1"))

        with pytest.raises(DBAPIError) as failed:
            await forget_transaction()
        assert classify(failed.value) is Failure.UNAVAILABLE
        assert db.pool_status().checked_out == 0
        # The next session gets a working connection.
        assert await _show(db, "idle_in_transaction_session_timeout") == "300ms"


async def _no_backends(admin: asyncpg.Connection, application_name: str) -> bool:
    return not sum((await backend_states(admin, application_name)).values())
