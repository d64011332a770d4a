"""`Database.run_transaction`: real conflicts are re-run in a fresh session; others are not.

The conflicts are produced by the server, not simulated: two SERIALIZABLE transactions with
write skew (40001), two transactions locking rows in opposite order (40P01), a SQLite write
lock held by another connection. Anyio events make the interleaving deterministic.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, Failure, classify

RETRY_LOG = "transaction conflict"


@pytest.fixture
async def pg_db(postgres_url: str) -> AsyncIterator[Database]:
    async with Database(postgres_url, session_class=AsyncSession) as db:
        async with db.session() as session:
            await session.execute(
                text("CREATE TABLE duty (doctor text PRIMARY KEY, on_call boolean NOT NULL)")
            )
            await session.execute(text("INSERT INTO duty VALUES ('alice', true), ('bob', true)"))
        yield db


@pytest.mark.postgres
async def test_serialization_failure_is_retried_in_a_fresh_session(
    pg_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Write skew: each doctor may go off call if the other is still on call. Both read "two on
    # call", both go off; SERIALIZABLE refuses the second commit (40001). Re-run, the second
    # reads "one on call" and stays: the invariant holds.
    attempts: Counter[str] = Counter()
    sessions: dict[str, list[AsyncSession]] = {"alice": [], "bob": []}
    has_read = {"alice": anyio.Event(), "bob": anyio.Event()}

    async def go_off_call(doctor: str, other: str, session: AsyncSession) -> bool:
        attempts[doctor] += 1
        sessions[doctor].append(session)
        isolation = await session.scalar(text("SHOW transaction_isolation"))
        assert isolation == "serializable"
        on_call = await session.scalar(text("SELECT count(*) FROM duty WHERE on_call"))
        if attempts[doctor] == 1:  # the first attempts interleave: both read, then both write
            has_read[doctor].set()
            await has_read[other].wait()
        if on_call < 2:
            return False
        await session.execute(
            text("UPDATE duty SET on_call = false WHERE doctor = :d"), {"d": doctor}
        )
        return True

    results: dict[str, bool] = {}

    async def doctor(name: str, other: str) -> None:
        results[name] = await pg_db.run_transaction(
            lambda session: go_off_call(name, other, session),
            isolation_level="SERIALIZABLE",
            retries=3,
            backoff=0.01,
        )

    caplog.set_level(logging.INFO, logger="sessionwise")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(doctor, "alice", "bob")
            group.start_soon(doctor, "bob", "alice")

    assert sorted(attempts.values()) == [1, 2]  # exactly one transaction was re-run
    retried = max(attempts, key=attempts.__getitem__)
    first, second = sessions[retried]
    assert first is not second  # ... in a fresh session
    assert results == {retried: False, ("bob" if retried == "alice" else "alice"): True}
    retries = [r.getMessage() for r in caplog.records if RETRY_LOG in r.getMessage()]
    assert len(retries) == 1
    assert "(SQLSTATE 40001)" in retries[0]  # the cause; not the SQL and its parameters
    assert "UPDATE" not in retries[0]
    async with pg_db.read_session() as session:
        assert await session.scalar(text("SELECT count(*) FROM duty WHERE on_call")) == 1
        # The isolation level was the transaction's, not left on the pooled connection.
        assert await session.scalar(text("SHOW transaction_isolation")) == "read committed"


@pytest.mark.postgres
async def test_deadlock_is_retried_and_both_transactions_succeed(
    pg_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: Counter[str] = Counter()
    locked_first_row = {"alice": anyio.Event(), "bob": anyio.Event()}

    async def swap(first: str, second: str, session: AsyncSession) -> None:
        attempts[first] += 1
        await session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
        update = text("UPDATE duty SET on_call = NOT on_call WHERE doctor = :d")
        await session.execute(update, {"d": first})
        if attempts[first] == 1:  # both hold one row lock, then each asks for the other's
            locked_first_row[first].set()
            await locked_first_row[second].wait()
        await session.execute(update, {"d": second})

    caplog.set_level(logging.INFO, logger="sessionwise")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for first, second in (("alice", "bob"), ("bob", "alice")):
                group.start_soon(
                    pg_db.run_transaction,
                    lambda session, a=first, b=second: swap(a, b, session),
                )

    assert sorted(attempts.values()) == [1, 2]
    retries = [r.getMessage() for r in caplog.records if RETRY_LOG in r.getMessage()]
    assert len(retries) == 1
    assert "(SQLSTATE 40P01)" in retries[0]  # deadlock detected
    async with pg_db.read_session() as session:
        # Each transaction flipped both rows once: twice flipped, back where they started.
        assert await session.scalar(text("SELECT count(*) FROM duty WHERE on_call")) == 2


@pytest.mark.postgres
async def test_non_retryable_errors_are_raised_at_once(pg_db: Database) -> None:
    attempts = 0

    async def insert_duplicate(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO duty VALUES ('alice', false)"))

    with pytest.raises(IntegrityError):
        await pg_db.run_transaction(insert_duplicate, retries=5, backoff=0.01)
    assert attempts == 1

    async def fail_in_python(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("UPDATE duty SET on_call = false"))
        raise ValueError("not a database conflict")

    attempts = 0
    with pytest.raises(ValueError, match="not a database conflict"):
        await pg_db.run_transaction(fail_in_python, retries=5, backoff=0.01)
    assert attempts == 1
    async with pg_db.read_session() as session:  # and its work was rolled back
        assert await session.scalar(text("SELECT count(*) FROM duty WHERE on_call")) == 2


@pytest.mark.postgres
@pytest.mark.parametrize("retries", [0, 2])
async def test_conflict_after_the_last_retry_is_raised(pg_db: Database, retries: int) -> None:
    sessions: list[AsyncSession] = []

    async def always_conflicts(session: AsyncSession) -> None:
        sessions.append(session)
        await session.execute(text("UPDATE duty SET on_call = false"))
        # A real 40001 raised by the server, every time.
        await session.execute(
            text(
                "DO $$ BEGIN RAISE EXCEPTION 'forced conflict' "
                "USING ERRCODE = 'serialization_failure'; END $$"
            )
        )

    with pytest.raises(DBAPIError, match="forced conflict") as raised:
        await pg_db.run_transaction(always_conflicts, retries=retries, backoff=0.001)
    assert classify(raised.value) is Failure.CONFLICT
    assert len(sessions) == retries + 1
    assert len({id(session) for session in sessions}) == retries + 1  # a fresh one each time
    async with pg_db.read_session() as session:
        assert await session.scalar(text("SELECT count(*) FROM duty WHERE on_call")) == 2


def _hold_write_lock(path: str, held: anyio.Event, release_after: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        anyio.from_thread.run_sync(held.set)
        anyio.from_thread.run(anyio.sleep, release_after)
        connection.execute("COMMIT")
    finally:
        connection.close()


async def test_sqlite_lock_timeout_is_retried(sqlite_url: str) -> None:
    attempts = 0

    async def increment(session: AsyncSession) -> int:
        nonlocal attempts
        attempts += 1
        await session.execute(text("UPDATE counter SET n = n + 1"))
        return int(await session.scalar(text("SELECT n FROM counter")))

    db = Database(sqlite_url, session_class=AsyncSession, sqlite_busy_timeout=0.05)
    async with db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
            await session.execute(text("INSERT INTO counter VALUES (0)"))
        path = make_url(sqlite_url).database
        assert path is not None
        held = anyio.Event()
        async with anyio.create_task_group() as group:
            # Another process-like writer holds the lock for 0.3 s; each attempt waits 50 ms.
            group.start_soon(anyio.to_thread.run_sync, _hold_write_lock, path, held, 0.3)
            await held.wait()
            assert await db.run_transaction(increment, retries=10, backoff=0.05) == 1
        assert attempts > 1


async def test_serializable_on_sqlite_keeps_the_profiles_transaction_control(
    sqlite_url: str,
) -> None:
    # SQLite is serializable already. Setting the level anyway made the pysqlite dialect switch
    # the pooled connection back to the driver's implicit BEGIN (isolation_level ""), which the
    # SQLite profile turns off (isolation_level None) so that SQLAlchemy controls BEGIN.
    async with Database(sqlite_url, session_class=AsyncSession, pool_size=1) as db:

        async def driver_mode(session: AsyncSession) -> object:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            return raw.driver_connection._conn.isolation_level  # type: ignore[union-attr]

        assert await db.run_transaction(driver_mode, isolation_level="SERIALIZABLE") is None
        async with db.session() as session:  # the same pooled connection, afterwards
            assert await driver_mode(session) is None
