"""SQLite write sessions of one process queue fairly for the single writer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from sqlalchemy import text

from sessionwise import (
    Database,
    Failure,
    NestedSessionError,
    Session,
    WriteQueueTimeoutError,
    classify,
)

WRITERS = 30
ROUNDS = 5


async def _run(session: Session, sql: str, **params: int) -> None:
    """A statement without rows (SQLModel's session deprecates execute())."""
    connection = await session.connection()
    await connection.execute(text(sql), params)


@asynccontextmanager
async def another_task_holding_the_turn(db: Database) -> AsyncIterator[None]:
    """Inside the block, another task holds an open write session; it closes at the end."""
    holding = anyio.Event()
    release = anyio.Event()

    async def hold() -> None:
        async with db.session() as session:
            await session.scalar(text("SELECT n FROM counter"))
            holding.set()
            await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(hold)
        await holding.wait()
        yield
        release.set()


async def _counter_db(url: str, busy_timeout: float) -> Database:
    db = Database(url, sqlite_busy_timeout=busy_timeout, pool_size=5, max_overflow=30)
    await db.start()
    async with db.session() as session:
        await _run(session, "CREATE TABLE counter (n INTEGER NOT NULL)")
        await _run(session, "INSERT INTO counter VALUES (0)")
    return db


async def test_many_slow_writers_all_get_their_turn(sqlite_url: str) -> None:
    # Each transaction reads, holds its turn for 10 ms, then writes: 150 of them, 30 at a time.
    # In FIFO order the longest wait is about 30 x 10 ms, far below the 2 s busy timeout.
    db = await _counter_db(sqlite_url, busy_timeout=2.0)
    failures: list[BaseException] = []

    async def writer() -> None:
        for _ in range(ROUNDS):
            try:
                async with db.session() as session:
                    n = await session.scalar(text("SELECT n FROM counter"))
                    await anyio.sleep(0.01)
                    await _run(session, "UPDATE counter SET n = :n", n=n + 1)
            except Exception as error:
                failures.append(error)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(WRITERS):
                group.start_soon(writer)
        assert failures == []
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT n FROM counter")) == WRITERS * ROUNDS
        assert db.pool_status().checked_out == 0
    finally:
        await db.close()


async def test_a_second_write_session_in_the_same_task_fails_at_once(sqlite_url: str) -> None:
    db = await _counter_db(sqlite_url, busy_timeout=30.0)
    try:
        async with db.session() as outer:
            await outer.scalar(text("SELECT n FROM counter"))
            # A nested write session (issue 9, finding 3): refused before it queues at all.
            with pytest.raises(NestedSessionError, match="Pass the open session down"):
                async with db.session() as inner:
                    await inner.scalar(text("SELECT n FROM counter"))
            # Reading alongside is fine: read sessions never queue.
            async with db.read_session() as reader:
                assert await reader.scalar(text("SELECT n FROM counter")) == 0
        assert db.pool_status().checked_out == 0
    finally:
        await db.close()


async def test_a_writer_that_waits_too_long_fails_as_locked(sqlite_url: str) -> None:
    db = await _counter_db(sqlite_url, busy_timeout=0.3)
    try:
        async with another_task_holding_the_turn(db):
            with pytest.raises(WriteQueueTimeoutError) as raised:
                async with db.session() as session:
                    await _run(session, "UPDATE counter SET n = 1")
            assert classify(raised.value) is Failure.LOCKED  # 503 through the FastAPI adapter
        # Turns are given back: the next writer goes through.
        async with db.session() as session:
            await _run(session, "UPDATE counter SET n = 2")
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT n FROM counter")) == 2
    finally:
        await db.close()


async def test_a_writer_cancelled_while_queued_takes_nothing(sqlite_url: str) -> None:
    db = await _counter_db(sqlite_url, busy_timeout=30.0)
    try:
        async with another_task_holding_the_turn(db):
            for _ in range(20):
                with anyio.move_on_after(0.01):
                    async with db.session() as session:
                        await _run(session, "UPDATE counter SET n = n + 100")
        async with db.session() as session:
            await _run(session, "UPDATE counter SET n = n + 1")
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT n FROM counter")) == 1
        assert db.pool_status().checked_out == 0
    finally:
        await db.close()
