"""No shared sessions: two tasks inside one session at once fail fast, every time.

An `AsyncSession` is one connection and one transaction. The guard refuses the first
overlapping call with `ConcurrentSessionUseError` (never a driver error later, never a silent
interleaving), whether or not the pool is busy, and the session still closes and hands its
connection back. Taking turns is fine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, func, select

from sessionwise import ConcurrentSessionUseError, Database, Session
from sessionwise.exceptions import SessionEndedError

REPEATS = 50


class ConcurrencyModel(SQLModel, registry=registry()):
    """Tables of this module, kept out of SQLModel.metadata that other code creates whole."""


class Counter(ConcurrencyModel, table=True):
    __tablename__ = "concurrency_counter"

    id: int | None = Field(default=None, primary_key=True)
    writer: str = Field(max_length=20)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    # Far more connections than one session can use: the pool is never what refuses.
    async with Database(database_url, pool_size=5, max_overflow=5) as database:
        async with database.engine.begin() as connection:
            await connection.run_sync(ConcurrencyModel.metadata.create_all)
        yield database


async def query_a_few_times(session: Session) -> int:
    """Three round trips, so the task is still using the session after its first call."""
    total = 0
    for _ in range(3):
        total += await session.scalar(text("SELECT 1")) or 0
    return total


async def gather_on_one_session(db: Database, tasks: list[asyncio.Task[int]]) -> None:
    async with db.session() as session:
        tasks.append(asyncio.create_task(query_a_few_times(session)))
        tasks.append(asyncio.create_task(query_a_few_times(session)))
        await asyncio.gather(*tasks)


async def test_gather_on_one_session_raises_on_the_first_overlap_every_time(
    db: Database,
) -> None:
    for attempt in range(REPEATS):
        tasks: list[asyncio.Task[int]] = []
        with pytest.raises(ConcurrentSessionUseError, match="give every concurrent task its own"):
            await gather_on_one_session(db, tasks)
        first, second = tasks

        # The second task is refused at its very first call. The first one either finished
        # before cleanup shut it out, or is refused at its next call: never a driver error
        # from a session closed under it, never a connection checked out after the close.
        assert isinstance(second.exception(), ConcurrentSessionUseError)
        await asyncio.wait([first])
        assert first.exception() is None or isinstance(
            first.exception(), ConcurrentSessionUseError
        ), repr(first.exception())
        assert db.pool_status().checked_out == 0, f"connection leaked on attempt {attempt}"

    async with db.session() as session:
        assert await session.scalar(text("SELECT 1")) == 1
    assert db.pool_status().checked_out == 0


async def test_task_group_on_one_session_raises_on_the_first_overlap_every_time(
    db: Database,
) -> None:
    for attempt in range(REPEATS):
        with pytest.RaisesGroup(ConcurrentSessionUseError):
            async with db.session() as session, anyio.create_task_group() as group:
                group.start_soon(query_a_few_times, session)
                group.start_soon(query_a_few_times, session)

        assert db.pool_status().checked_out == 0, f"connection leaked on attempt {attempt}"

    async with db.session() as session:
        assert await session.scalar(text("SELECT 1")) == 1
    assert db.pool_status().checked_out == 0


async def test_overlapping_write_and_read_is_refused_and_nothing_is_committed(
    db: Database,
) -> None:
    async def write(session: Session) -> None:
        session.add(Counter(writer="first"))
        await session.flush()

    async def read(session: Session) -> int | None:
        return await session.scalar(select(func.count()).select_from(Counter))

    for _ in range(10):
        with pytest.raises(ConcurrentSessionUseError):
            async with db.session() as session:
                await asyncio.gather(write(session), read(session))
        assert db.pool_status().checked_out == 0

    async with db.read_session() as session:
        assert await read(session) == 0


async def test_tasks_taking_turns_on_one_session_are_allowed(db: Database) -> None:
    async def add(session: Session, writer: str) -> None:
        session.add(Counter(writer=writer))
        await session.flush()

    async with db.session() as session:
        async with anyio.create_task_group() as group:
            group.start_soon(add, session, "first")
        async with anyio.create_task_group() as group:
            group.start_soon(add, session, "second")
        await asyncio.create_task(add(session, "third"))

    async with db.read_session() as session:
        writers = list(await session.exec(select(Counter.writer).order_by(Counter.id)))
    assert writers == ["first", "second", "third"]
    assert db.pool_status().checked_out == 0


async def test_session_used_after_its_block_raises_instead_of_leaking(db: Database) -> None:
    async with db.session() as session:
        assert await session.scalar(text("SELECT 1")) == 1

    # SQLAlchemy alone would say "This Session has been permanently closed" (issue 17.2: the
    # message must say that the unit of work ended, and how to stream past a request).
    with pytest.raises(SessionEndedError, match="unit of work has ended"):
        await session.scalar(text("SELECT 1"))
    with pytest.raises(SessionEndedError, match="SessionStreamingResponse"):
        await session.stream(text("SELECT 1"))
    assert db.pool_status().checked_out == 0
