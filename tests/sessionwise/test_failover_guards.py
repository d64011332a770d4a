"""Connections that refuse writes with SQLSTATE 25006 are thrown away, with their pool (issue 12).

What a pool holds after a failover, when its address now leads to the demoted primary: live
connections whose every write fails with 25006. The test makes its pooled connections
exactly that, read-only sessions (``SET default_transaction_read_only = on``, as a server in
recovery answers), then writes: the write fails as unavailable (not retried, nothing stored),
and the pool keeps none of those connections. The real failover, on a Patroni cluster, is in
tests/faults/test_patroni_failover.py.
"""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sessionwise import Database, Failure, classify

pytestmark = pytest.mark.postgres

POOL = 3


async def _pids_of_concurrent_sessions(db: Database, statement: str | None = None) -> set[int]:
    """Hold POOL write sessions at once (so each has its own connection); their backend pids."""
    pids: set[int] = set()
    all_open = anyio.Event()

    async def one() -> None:
        async with db.session() as session:
            pids.add(int(await session.scalar(text("SELECT pg_backend_pid()")) or 0))
            if statement is not None:
                await session.execute(text(statement))
            if len(pids) == POOL:
                all_open.set()
            await all_open.wait()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for _ in range(POOL):
                group.start_soon(one)
    return pids


async def test_a_write_answering_25006_discards_the_connection_and_its_pool(
    postgres_url: str,
) -> None:
    async with Database(postgres_url, pool_size=POOL) as db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE notes (body text)"))
        demoted = await _pids_of_concurrent_sessions(db, "SET default_transaction_read_only = on")
        assert len(demoted) == POOL

        with pytest.raises(DBAPIError) as raised:
            async with db.session() as session:
                await session.execute(text("INSERT INTO notes VALUES ('refused')"))
        assert "25006" in str(raised.value.orig.sqlstate)  # type: ignore[union-attr]
        assert raised.value.connection_invalidated
        assert classify(raised.value) is Failure.UNAVAILABLE  # a 503 with Retry-After

        async with db.session() as session:
            await session.execute(text("INSERT INTO notes VALUES ('written')"))
        # None of the read-only connections came back: the whole pool was replaced.
        fresh = await _pids_of_concurrent_sessions(db)
        assert not fresh & demoted, (fresh, demoted)
        async with db.read_session() as session:
            rows = (await session.scalars(text("SELECT body FROM notes"))).all()
        assert rows == ["written"]  # the refused write was not retried behind the caller


async def test_a_read_only_session_keeps_its_connection_on_25006(postgres_url: str) -> None:
    # read_sessions="transaction": the READ ONLY transaction runs on the write pool, and a
    # write there is the application's bug; the pool must not be thrown away for it.
    async with Database(postgres_url, pool_size=1) as db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE notes (body text)"))
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        with pytest.raises(DBAPIError) as raised:
            async with db.read_session() as session:
                await session.execute(text("INSERT INTO notes VALUES ('sneaked')"))
        assert not raised.value.connection_invalidated
        assert classify(raised.value) is Failure.OTHER
        async with db.session() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) == pid
