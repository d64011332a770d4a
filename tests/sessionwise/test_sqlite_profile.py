"""SQLite that holds up: the profile's PRAGMAs, IMMEDIATE writers, and in-memory databases.

Every test uses a real SQLite file (``sqlite_url``) or a real in-memory database, and checks
from a separate ``sqlite3`` connection where the claim is about the file itself.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiosqlite
import anyio
import anyio.lowlevel
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, Failure, classify

WRITERS = 20
ROUNDS = 10


def _path(url: str) -> str:
    database = make_url(url).database
    assert database is not None
    return database


def _write_lock_refusal(path: str) -> str | None:
    """Why a fresh connection cannot take the write lock at once, or None if it can."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return None
    except sqlite3.OperationalError as error:
        return str(error)
    finally:
        connection.close()


@pytest.fixture
async def file_db(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(sqlite_url, session_class=AsyncSession)
    async with db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
            await session.execute(
                text(
                    "CREATE TABLE child (id INTEGER PRIMARY KEY, "
                    "parent_id INTEGER NOT NULL REFERENCES parent (id))"
                )
            )
            await session.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
            await session.execute(text("INSERT INTO counter (id, n) VALUES (1, 0)"))
        yield db


# -- PRAGMAs ----------------------------------------------------------------------------------


async def test_file_database_gets_wal_foreign_keys_and_busy_timeout(file_db: Database) -> None:
    async with file_db.session() as session:
        assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
        assert await session.scalar(text("PRAGMA foreign_keys")) == 1
        assert await session.scalar(text("PRAGMA busy_timeout")) == 5000
        assert await session.scalar(text("PRAGMA synchronous")) == 1  # NORMAL
    # WAL is a property of the file: a fresh connection sees it too.
    connection = sqlite3.connect(_path(file_db.config.url))
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


async def test_busy_timeout_follows_the_configuration(sqlite_url: str) -> None:
    async with Database(sqlite_url, sqlite_busy_timeout=0.25) as db, db.session() as session:
        assert await session.scalar(text("PRAGMA busy_timeout")) == 250


async def test_foreign_key_violation_is_refused(file_db: Database) -> None:
    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed") as refused:
        async with file_db.session() as session:
            await session.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 42)"))
    assert classify(refused.value) is Failure.INTEGRITY
    async with file_db.session() as session:
        await session.execute(text("INSERT INTO parent (id) VALUES (42)"))
        await session.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 42)"))
    async with file_db.read_session() as session:
        assert await session.scalar(text("SELECT count(*) FROM child")) == 1


# -- IMMEDIATE write transactions -------------------------------------------------------------


async def test_write_session_takes_the_write_lock_before_its_first_write(file_db: Database) -> None:
    path = _path(file_db.config.url)
    async with file_db.read_session() as reader:
        assert await reader.scalar(text("SELECT n FROM counter")) == 0
        # A read session begins DEFERRED: having read, it still holds no write lock.
        assert await anyio.to_thread.run_sync(_write_lock_refusal, path) is None

    async with file_db.session() as writer:
        # Only a read so far, yet BEGIN IMMEDIATE already took the write lock.
        assert await writer.scalar(text("SELECT n FROM counter")) == 0
        assert await anyio.to_thread.run_sync(_write_lock_refusal, path) == ("database is locked")

        # A second writer cannot begin while the first holds its transaction ...
        async with Database(file_db.config.url, sqlite_busy_timeout=0.2) as other:
            with pytest.raises(OperationalError, match="database is locked") as locked:
                async with other.session() as second:
                    await second.connection()
            assert classify(locked.value) is Failure.LOCKED

            # ... while a reader reads at once, and sees only committed data.
            await writer.execute(text("UPDATE counter SET n = 99"))
            async with other.read_session() as reader:
                assert await reader.scalar(text("SELECT n FROM counter")) == 0

    assert await anyio.to_thread.run_sync(_write_lock_refusal, path) is None
    async with file_db.read_session() as reader:
        assert await reader.scalar(text("SELECT n FROM counter")) == 99


async def test_concurrent_read_then_write_transactions_lose_no_update(file_db: Database) -> None:
    errors: Counter[str] = Counter()

    async def increment_repeatedly() -> None:
        for _ in range(ROUNDS):
            try:
                async with file_db.session() as session:
                    current = await session.scalar(text("SELECT n FROM counter WHERE id = 1"))
                    await (
                        anyio.lowlevel.checkpoint()
                    )  # let the others run between the read and the write
                    await session.execute(
                        text("UPDATE counter SET n = :n WHERE id = 1"), {"n": current + 1}
                    )
            except OperationalError as error:
                errors[str(error.orig)] += 1

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for _ in range(WRITERS):
            group.start_soon(increment_repeatedly)
    elapsed = time.monotonic() - started

    assert errors == Counter(), errors  # not one "database is locked"
    async with file_db.read_session() as session:
        assert await session.scalar(text("SELECT n FROM counter")) == WRITERS * ROUNDS
    print(f"{WRITERS} writers x {ROUNDS} read-then-write rounds: {elapsed:.2f}s")


async def test_control_deferred_read_then_write_transactions_fail(file_db: Database) -> None:
    # The same workload on plain DEFERRED transactions (aiosqlite, no sessionwise): a reader
    # that tries to upgrade after another writer committed fails at once, busy_timeout or not.
    # This is what BEGIN IMMEDIATE in the profile prevents.
    path = _path(file_db.config.url)
    errors: Counter[str] = Counter()

    async def increment_repeatedly() -> None:
        async with aiosqlite.connect(path, timeout=5, isolation_level=None) as connection:
            for _ in range(ROUNDS):
                await connection.execute("BEGIN")
                try:
                    cursor = await connection.execute("SELECT n FROM counter WHERE id = 1")
                    row = await cursor.fetchone()
                    assert row is not None
                    await anyio.lowlevel.checkpoint()
                    await connection.execute("UPDATE counter SET n = ? WHERE id = 1", (row[0] + 1,))
                    await connection.execute("COMMIT")
                except sqlite3.OperationalError as error:
                    errors[str(error)] += 1
                    await connection.execute("ROLLBACK")

    async with anyio.create_task_group() as group:
        for _ in range(WRITERS):
            group.start_soon(increment_repeatedly)

    assert errors["database is locked"] > 0
    async with file_db.read_session() as session:
        assert await session.scalar(text("SELECT n FROM counter")) < WRITERS * ROUNDS


# -- in-memory databases ----------------------------------------------------------------------

MEMORY_URLS = ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"]


@pytest.mark.parametrize("url", MEMORY_URLS)
async def test_memory_database_keeps_committed_work_of_concurrent_sessions(url: str) -> None:
    async with Database(url, session_class=AsyncSession) as db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY, by TEXT)"))

        class RolledBack(Exception):
            pass

        async def commit() -> None:
            async with db.session() as session:
                await session.execute(text("INSERT INTO note (by) VALUES (:by)"), {"by": "c"})
                await anyio.lowlevel.checkpoint()  # another coroutine runs here, mid-transaction

        rolled_back = 0

        async def roll_back() -> None:
            nonlocal rolled_back
            try:
                async with db.session() as session:
                    await session.execute(text("INSERT INTO note (by) VALUES (:by)"), {"by": "r"})
                    await anyio.lowlevel.checkpoint()
                    raise RolledBack
            except RolledBack:
                rolled_back += 1

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(commit)
                group.start_soon(roll_back)

        assert rolled_back == 10
        async with db.session() as session:
            rows = (await session.execute(text("SELECT by, count(*) FROM note GROUP BY by"))).all()
        assert [tuple(row) for row in rows] == [("c", 10)]  # every commit kept, no rollback's
        assert db.pool_status().checked_out == 0


@pytest.mark.parametrize("url", MEMORY_URLS)
async def test_memory_database_lives_until_close(url: str) -> None:
    db = Database(url, session_class=AsyncSession)
    async with db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY)"))
            await session.execute(text("INSERT INTO note (id) VALUES (1)"))
        # Every session so far has ended; the pool may even drop its connection.
        await db.engine.dispose()
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT count(*) FROM note")) == 1

    # Closed, the database is gone: a new Database with the same URL starts empty.
    async with Database(url, session_class=AsyncSession) as fresh, fresh.session() as session:
        with pytest.raises(OperationalError, match="no such table"):
            await session.execute(text("SELECT count(*) FROM note"))
