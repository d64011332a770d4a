"""`Database.ping()`: a readiness probe that a busy database still answers."""

from __future__ import annotations

from sqlalchemy import text

from sessionwise import Database


async def test_ping_does_not_wait_for_a_writer_on_sqlite(sqlite_url: str) -> None:
    # pool_timeout bounds the ping; a ping that queued for the write lock (BEGIN IMMEDIATE)
    # would wait out the 5 s busy timeout and report a healthy database as down.
    async with Database(sqlite_url, pool_timeout=1.0) as db:
        async with db.session() as session:
            await session.exec(text("CREATE TABLE t (x INTEGER)"))  # type: ignore[call-overload]
        async with db.session() as writer:
            await writer.exec(text("INSERT INTO t VALUES (1)"))  # type: ignore[call-overload]
            assert await db.ping()  # the write lock is held right now
        assert await db.ping()
