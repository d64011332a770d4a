"""PgBouncer in transaction mode: ``Database(url, pgbouncer=True)`` works through a real one.

Transaction pooling hands each transaction to whichever server connection is free, so state
a client leaves on a server connection (prepared statements, SET) turns up in another
client's transactions. The workload here is the one that exposes it: many client
connections sharing few server connections, the same parameterized statements repeated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import anyio
import asyncpg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, Failure, classify
from tests.support.pgbouncer import PgBouncer, running_pgbouncer

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer]

CLIENTS = 20
TRANSACTIONS = 20
SERVER_CONNECTIONS = 5

metadata = MetaData()
item = Table(
    "pgb_item",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("worker", Integer, nullable=False),
    Column("n", Integer, nullable=False),
)


@pytest.fixture
def bouncer(postgres_url: str) -> Iterator[PgBouncer]:
    with running_pgbouncer(postgres_url, pool_size=SERVER_CONNECTIONS) as running:
        yield running


async def _create_table(url: str) -> None:
    async with Database(url, session_class=AsyncSession) as db, db.session() as session:
        await session.run_sync(lambda sync_session: metadata.create_all(sync_session.connection()))


async def _run_workload(db: Database) -> Counter[str]:
    """CLIENTS sessions at once, TRANSACTIONS each, the same parameterized statements."""
    errors: Counter[str] = Counter()

    async def client(worker: int) -> None:
        committed = 0
        for n in range(TRANSACTIONS):
            try:
                async with db.session() as session:
                    await session.execute(insert(item).values(worker=worker, n=n))
                    count = select(func.count()).select_from(item).where(item.c.worker == worker)
                    seen = await session.scalar(count)
                if seen != committed + 1:
                    errors[f"wrong count: {seen} rows, expected {committed + 1}"] += 1
                committed += 1
            except DBAPIError as error:
                errors[f"{type(error.orig).__name__}: {error.orig}"] += 1

    async with anyio.create_task_group() as group:
        for worker in range(CLIENTS):
            group.start_soon(client, worker)
    return errors


async def test_concurrent_sessions_through_pgbouncer_have_no_errors(
    postgres_url: str, bouncer: PgBouncer
) -> None:
    await _create_table(postgres_url)
    db = Database(
        bouncer.url,
        session_class=AsyncSession,
        pgbouncer=True,
        statement_timeout=5,
        pool_size=CLIENTS,  # one client connection per session: 20 clients, 5 server conns
        max_overflow=0,
    )
    async with db:
        errors = await _run_workload(db)
        assert errors == Counter(), f"{errors}\n{bouncer.log}"
        async with db.read_session() as session:
            per_worker = await session.execute(
                select(item.c.worker, func.count()).group_by(item.c.worker)
            )
            assert dict(per_worker.all()) == dict.fromkeys(range(CLIENTS), TRANSACTIONS)
        assert db.pool_status().checked_out == 0


async def test_control_without_pgbouncer_mode_the_workload_fails(
    postgres_url: str, bouncer: PgBouncer
) -> None:
    # The same workload with asyncpg's statement caches on: a statement prepared on one server
    # connection is missing (or already there) on the next. This is what pgbouncer=True fixes.
    await _create_table(postgres_url)
    # No timeouts as startup parameters either (PgBouncer refuses those outright: the default
    # idle_in_transaction_timeout would fail every connection before a statement runs).
    db = Database(
        bouncer.url,
        session_class=AsyncSession,
        pool_size=CLIENTS,
        max_overflow=0,
        idle_in_transaction_timeout=None,
    )
    async with db:
        errors = await _run_workload(db)
    prepared_statement_errors = sum(
        count for message, count in errors.items() if "prepared statement" in message
    )
    assert prepared_statement_errors > 0, errors


async def test_statement_timeout_applies_through_pgbouncer(
    postgres_url: str, bouncer: PgBouncer
) -> None:
    db = Database(bouncer.url, session_class=AsyncSession, pgbouncer=True, statement_timeout=5)
    async with db:
        async with db.session() as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "5s"
        async with db.read_session() as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "5s"
            assert await session.scalar(text("SHOW transaction_read_only")) == "on"

    async with Database(bouncer.url, pgbouncer=True, statement_timeout=0.2) as db:
        with pytest.raises(DBAPIError) as failed:
            async with db.session() as session:
                await session.scalar(text("SELECT pg_sleep(3)"))
        assert classify(failed.value) is Failure.TIMEOUT


async def test_timeouts_are_set_per_transaction_and_do_not_leak(postgres_url: str) -> None:
    # One server connection behind PgBouncer: every client gets that same one. SET LOCAL
    # ends with each transaction; a plain SET would leave 50ms for the next client.
    with running_pgbouncer(postgres_url, pool_size=1) as bouncer:
        db = Database(
            bouncer.url,
            pgbouncer=True,
            statement_timeout=0.05,
            idle_in_transaction_timeout=1,
            lock_timeout=0.02,
        )
        async with db:
            async with db.session() as session:
                backend = await session.scalar(text("SELECT pg_backend_pid()"))
                assert await session.scalar(text("SHOW statement_timeout")) == "50ms"
                assert (
                    await session.scalar(text("SHOW idle_in_transaction_session_timeout")) == "1s"
                )
                assert await session.scalar(text("SHOW lock_timeout")) == "20ms"

            other = await asyncpg.connect(
                bouncer.url.replace("postgresql+asyncpg", "postgresql"), statement_cache_size=0
            )
            try:
                assert await other.fetchval("SELECT pg_backend_pid()") == backend
                assert await other.fetchval("SHOW statement_timeout") == "0"
                assert await other.fetchval("SHOW idle_in_transaction_session_timeout") == "0"
                assert await other.fetchval("SHOW lock_timeout") == "0"
            finally:
                await other.close()


async def test_the_default_idle_timeout_costs_no_statement_behind_pgbouncer(
    postgres_url: str,
) -> None:
    # DatabaseConfig.idle_in_transaction_timeout: its default would be a SET LOCAL in every
    # transaction here; PgBouncer's idle_transaction_timeout or a role setting do it for free.
    statements: list[str] = []
    with running_pgbouncer(postgres_url, pool_size=1) as bouncer:
        async with Database(bouncer.url, pgbouncer=True) as db:
            event.listen(
                db.engine.sync_engine,
                "before_cursor_execute",
                lambda _c, _cur, statement, *_: statements.append(statement),
            )
            async with db.session() as session:
                assert await session.scalar(text("SHOW idle_in_transaction_session_timeout")) == "0"
    assert not [statement for statement in statements if statement.startswith("SET LOCAL")]
