"""Cancelled sessions and requests leave nothing behind.

Hundreds of sessions are cancelled while a query runs and while COMMIT runs, by anyio cancel
scopes (a deadline, a cancelled task group) and through a FastAPI app over httpx's
ASGITransport, where the request runs in the client's task and so is cancelled with it.
Afterwards the pool has no connection checked out, PostgreSQL has no backend of the test
still busy (``idle in transaction`` would hold locks and snapshots forever), and a SQLite file
still takes a write lock from a fresh connection.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionwise import Database
from sessionwise.fastapi import AsyncSessionDep
from tests.support.pg_activity import settled_states
from tests.support.waiting import wait_until

TOTAL = 300  # cancelled sessions or requests per test
WAVE = 10  # at once: the pool's 5 + 5 overflow connections, all of them in use
LONG_QUERY = 30.0  # seconds: PostgreSQL queries that only a cancellation ends
SQLITE_QUERY = 0.02  # seconds of a Python sleep, which no interrupt can cut short
CANCEL_AFTER = 0.05  # seconds into the query (PostgreSQL) or commit
SQLITE_CANCEL_AFTER = 0.005


class Base(DeclarativeBase):
    pass


class CancelItem(Base):
    __tablename__ = "cancel_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str]


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _register_sqlite_sleep(dbapi_connection: Any, _record: Any) -> None:
    # A slow statement for SQLite: pg_sleep(s) as a user function, run in aiosqlite's thread.
    dbapi_connection.create_function("pg_sleep", 1, _sleep)


POSTGRES_SCHEMA = [
    "CREATE TABLE cancel_item (id serial PRIMARY KEY, note text NOT NULL)",
    # Fires inside COMMIT, so a cancellation soon after COMMIT was sent lands in it.
    "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.25); RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON cancel_item "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()",
]
SQLITE_SCHEMA = [
    "CREATE TABLE cancel_item (id INTEGER PRIMARY KEY, note TEXT NOT NULL)",
    # SQLite has no deferred triggers; the ORM flush inside commit() runs this INSERT.
    f"CREATE TRIGGER slow_insert AFTER INSERT ON cancel_item "
    f"BEGIN SELECT pg_sleep({SQLITE_QUERY}); END",
]


async def _create_schema(db: Database, statements: list[str]) -> None:
    async with db.session() as session:
        for statement in statements:
            await session.execute(text(statement))


@pytest.fixture
async def pg_db(postgres_url: str, application_name: str) -> AsyncIterator[Database]:
    db = Database(
        postgres_url,
        session_class=AsyncSession,
        application_name=application_name,
        pool_size=5,
        max_overflow=5,
        # Each cancelled query's backend ends within this, so hundreds of them never crowd
        # the server's max_connections (see DatabaseConfig.client_connection_check_interval).
        client_connection_check_interval=0.25,
    )
    async with db:
        await _create_schema(db, POSTGRES_SCHEMA)
        yield db


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(sqlite_url, session_class=AsyncSession, pool_size=5, max_overflow=5)
    async with db:
        event.listen(db.engine.sync_engine, "connect", _register_sqlite_sleep)
        await _create_schema(db, SQLITE_SCHEMA)
        yield db


async def _in_waves(run_one: Callable[[], Awaitable[None]]) -> None:
    for _ in range(TOTAL // WAVE):
        async with anyio.create_task_group() as group:
            for _ in range(WAVE):
                group.start_soon(run_one)


class Arrivals:
    """Counts the tasks of a wave that reached the point where they are to be cancelled."""

    def __init__(self) -> None:
        self.count = 0
        self.all_arrived = anyio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count == WAVE:
            self.all_arrived.set()


async def _cancel_in_waves(run_one: Callable[[Arrivals], Awaitable[None]]) -> None:
    """Per wave: start WAVE runs, and once all arrived, let them run a moment, cancel the group."""
    for _ in range(TOTAL // WAVE):
        arrivals = Arrivals()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for _ in range(WAVE):
                    group.start_soon(run_one, arrivals)
                await arrivals.all_arrived.wait()
                await anyio.sleep(CANCEL_AFTER)
                group.cancel_scope.cancel()


@contextmanager
def _asyncpg_tls_probe_reports_swallowed() -> Iterator[list[BaseException]]:
    """Swallow asyncpg's report about a connect cancelled during its TLS probe.

    With the default ``sslmode=prefer``, asyncpg first asks the server for TLS; cancelled
    during that exchange, it leaves a future holding ``ConnectionError('unexpected
    connection_lost() call')`` that nobody retrieves, and asyncio reports it when the future
    is collected (asyncpg issues #1211, #1310). The socket is closed, nothing leaks; only the
    report is asyncpg's. Every other unhandled error still fails the test.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    swallowed: list[BaseException] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, ConnectionError) and str(error) == (
            "unexpected connection_lost() call"
        ):
            swallowed.append(error)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield swallowed
    finally:
        gc.collect()  # the dropped futures report now, inside this window
        loop.set_exception_handler(previous)


async def _assert_postgres_released(db: Database, admin: asyncpg.Connection) -> None:
    assert db.pool_status().checked_out == 0
    states = await settled_states(admin, db.config.application_name)
    assert states["idle in transaction"] == 0, states
    assert states["idle in transaction (aborted)"] == 0, states
    # The cancelled pg_sleep(30) calls are aborted by the server, not left to run out.
    assert states["active"] == 0, states
    async with db.session() as session:
        assert await session.scalar(text("SELECT 1")) == 1
    assert db.pool_status().checked_out == 0


def _write_from_fresh_connection(path: str) -> int:
    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    connection.create_function("pg_sleep", 1, _sleep)  # the table's trigger calls it
    try:
        connection.execute("BEGIN IMMEDIATE")  # fails with "database is locked" if one leaked
        connection.execute("INSERT INTO cancel_item (note) VALUES ('after')")
        connection.execute("COMMIT")
        return int(connection.execute("SELECT count(*) FROM cancel_item").fetchone()[0])
    finally:
        connection.close()


def _pending_connection_closes() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "close" in task.get_coro().__qualname__
    ]


async def _assert_sqlite_released(db: Database) -> None:
    assert db.pool_status().checked_out == 0
    # Each cancelled query's connection is closed by a background task; all of them finish
    # (with aiosqlite's second stop() queued after the first, they used to wait forever).
    await wait_until(lambda: not _pending_connection_closes())
    async with db.session() as session:
        await session.execute(text("INSERT INTO cancel_item (note) VALUES ('through db')"))
    path = make_url(db.config.url).database
    assert path is not None
    rows = await anyio.to_thread.run_sync(_write_from_fresh_connection, path)
    assert rows >= 2
    assert db.pool_status().checked_out == 0


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_sessions_cancelled_mid_query_by_deadline_leak_nothing(
    pg_db: Database, pg_admin: asyncpg.Connection
) -> None:
    outcome: Counter[str] = Counter()

    async def one() -> None:
        with anyio.move_on_after(10) as scope:
            async with pg_db.session() as session:
                await session.connection()
                scope.deadline = anyio.current_time() + CANCEL_AFTER
                outcome["querying"] += 1
                await session.execute(text("SELECT pg_sleep(:s)"), {"s": LONG_QUERY})
                outcome["finished"] += 1
        outcome["cancelled"] += scope.cancelled_caught

    await _in_waves(one)

    assert outcome == {"querying": TOTAL, "cancelled": TOTAL}
    await _assert_postgres_released(pg_db, pg_admin)


@pytest.mark.postgres
async def test_sessions_cancelled_mid_query_by_task_group_leak_nothing(
    pg_db: Database, pg_admin: asyncpg.Connection
) -> None:
    outcome: Counter[str] = Counter()

    async def one(arrivals: Arrivals) -> None:
        async with pg_db.session() as session:
            await session.execute(text("SELECT 1"))  # transaction open, connection held
            outcome["querying"] += 1
            arrivals.arrive()
            await session.execute(text("SELECT pg_sleep(:s)"), {"s": LONG_QUERY})
            outcome["finished"] += 1

    await _cancel_in_waves(one)

    assert outcome == {"querying": TOTAL}
    await _assert_postgres_released(pg_db, pg_admin)


@pytest.mark.postgres
async def test_sessions_cancelled_mid_commit_leak_nothing(
    pg_db: Database, pg_admin: asyncpg.Connection
) -> None:
    outcome: Counter[str] = Counter()

    async def one() -> None:
        with anyio.move_on_after(10) as scope:
            async with pg_db.session() as session:
                await session.execute(text("INSERT INTO cancel_item (note) VALUES ('x')"))
                # The block ends here: COMMIT runs the 0.25 s trigger and is cancelled in it.
                scope.deadline = anyio.current_time() + CANCEL_AFTER
                outcome["committing"] += 1
            outcome["committed"] += 1
        outcome["cancelled"] += scope.cancelled_caught

    await _in_waves(one)

    assert outcome == {"committing": TOTAL, "cancelled": TOTAL}
    await _assert_postgres_released(pg_db, pg_admin)
    async with pg_db.session() as session:
        # No transaction of a cancelled session still holds a lock on the table.
        await session.execute(text("LOCK TABLE cancel_item IN ACCESS EXCLUSIVE MODE NOWAIT"))


@pytest.mark.postgres
async def test_sessions_cancelled_between_statements_keep_their_connections(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    # Cancelled while awaiting something else, a session's rollback in close() is shielded
    # (Database._unit_of_work): it completes and the connection goes back to the pool intact,
    # where an interrupted rollback would make SQLAlchemy throw the connection away.
    pool_size = WAVE
    db = Database(
        postgres_url,
        session_class=AsyncSession,
        application_name=application_name,
        pool_size=pool_size,
        max_overflow=0,
    )
    backends: set[int] = set()
    async with db:
        await _create_schema(db, POSTGRES_SCHEMA[:1])

        async def one(arrivals: Arrivals) -> None:
            async with db.session() as session:
                await session.execute(text("INSERT INTO cancel_item (note) VALUES ('x')"))
                backends.add(await session.scalar(text("SELECT pg_backend_pid()")))
                arrivals.arrive()
                await anyio.sleep(LONG_QUERY)  # e.g. an HTTP call inside the transaction

        await _cancel_in_waves(one)

        assert len(backends) == pool_size  # 300 sessions, never a connection replaced
        await _assert_postgres_released(db, pg_admin)
        async with db.session() as session:
            assert await session.scalar(text("SELECT count(*) FROM cancel_item")) == 0


def _sleep_app(
    db: Database, seconds: float, outcome: Counter[str], arrivals: list[Arrivals] | None = None
) -> FastAPI:
    """``GET /sleep`` sleeps in the database; ``POST /items`` inserts, then commits slowly.

    Both report to the last of *arrivals*: ``/sleep`` as its query starts, ``/items`` once
    its endpoint returned.
    """
    app = FastAPI(lifespan=db.lifespan)

    @app.get("/sleep")
    async def sleep(session: AsyncSessionDep) -> dict[str, bool]:
        await session.connection()
        outcome["querying"] += 1
        if arrivals:
            arrivals[-1].arrive()
        await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        outcome["finished"] += 1
        return {"slept": True}

    @app.post("/items", status_code=201)
    async def create_item(session: AsyncSessionDep) -> dict[str, bool]:
        session.add(CancelItem(note="request"))
        await session.flush()  # the INSERT runs here; COMMIT runs after the endpoint
        outcome["committing"] += 1
        if arrivals:
            arrivals[-1].arrive()
        return {"created": True}

    return app


@pytest.fixture
def outcome() -> Counter[str]:
    return Counter()


@pytest.mark.postgres
async def test_requests_cancelled_by_client_timeout_leak_nothing(
    pg_db: Database, pg_admin: asyncpg.Connection, outcome: Counter[str]
) -> None:
    app = _sleep_app(pg_db, LONG_QUERY, outcome)
    timed_out = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal timed_out
        # The client gives up; with ASGITransport the app runs in this task and is cancelled.
        with anyio.move_on_after(0.2) as scope:
            await client.get("/sleep")
        timed_out += scope.cancelled_caught

    # A fixed client timeout also lands while a connection is being opened.
    with _asyncpg_tls_probe_reports_swallowed():
        async with pg_db.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await _in_waves(lambda: one(client))
                assert timed_out == TOTAL
            assert outcome["finished"] == 0
            # Some requests were inside pg_sleep when the client gave up, others still opening
            # their connection (a cancellation point too; the next test times it exactly).
            assert outcome["querying"] > 0, outcome
            await _assert_postgres_released(pg_db, pg_admin)


@pytest.mark.postgres
async def test_request_tasks_cancelled_mid_query_leak_nothing(
    pg_db: Database, pg_admin: asyncpg.Connection, outcome: Counter[str]
) -> None:
    arrivals: list[Arrivals] = []
    app = _sleep_app(pg_db, LONG_QUERY, outcome, arrivals)

    async with pg_db.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def get_sleep(wave: Arrivals) -> None:
                arrivals.append(wave)
                await client.get("/sleep")  # cancelled once every request of the wave queries
                outcome["answered"] += 1

            await _cancel_in_waves(get_sleep)
            assert outcome == {"querying": TOTAL}
            await _assert_postgres_released(pg_db, pg_admin)


@pytest.mark.postgres
async def test_request_tasks_cancelled_mid_commit_leak_nothing(
    pg_db: Database, pg_admin: asyncpg.Connection, outcome: Counter[str]
) -> None:
    arrivals: list[Arrivals] = []
    app = _sleep_app(pg_db, LONG_QUERY, outcome, arrivals)
    answered = 0

    async with pg_db.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def post_item(wave: Arrivals) -> None:
                nonlocal answered
                arrivals.append(wave)
                await client.post("/items")  # cancelled once every endpoint of the wave returned
                answered += 1

            await _cancel_in_waves(post_item)
            assert answered == 0
            assert outcome["committing"] == TOTAL
            await _assert_postgres_released(pg_db, pg_admin)
            async with pg_db.session() as session:
                # FastAPI shields the exit of yield dependencies (fastapi/concurrency.py,
                # _asynccontextmanager_with_shielded_exit): once the endpoint returned, the
                # request's COMMIT completes although the client is gone; no half-done work.
                committed = await session.scalar(text("SELECT count(*) FROM cancel_item"))
                assert committed == TOTAL


# -- SQLite --------------------------------------------------------------------------------------


async def test_sqlite_sessions_cancelled_mid_query_leak_nothing(sqlite_db: Database) -> None:
    outcome: Counter[str] = Counter()

    async def one() -> None:
        # Every other session writes first and so holds the write lock when it is cancelled.
        writes = outcome["started"] % 2 == 0
        outcome["started"] += 1
        with anyio.move_on_after(10) as scope:
            async with sqlite_db.session() if writes else sqlite_db.read_session() as session:
                if writes:
                    await session.execute(text("INSERT INTO cancel_item (note) VALUES ('x')"))
                else:
                    await session.connection()
                scope.deadline = anyio.current_time() + SQLITE_CANCEL_AFTER
                outcome["querying"] += 1
                await session.execute(text("SELECT pg_sleep(:s)"), {"s": SQLITE_QUERY})
                outcome["finished"] += 1
        outcome["cancelled"] += scope.cancelled_caught

    await _in_waves(one)

    assert outcome == {"started": TOTAL, "querying": TOTAL, "cancelled": TOTAL}
    await _assert_sqlite_released(sqlite_db)
    async with sqlite_db.read_session() as session:
        # Every cancelled write was rolled back, none half-kept.
        assert await session.scalar(text("SELECT count(*) FROM cancel_item WHERE note = 'x'")) == 0


async def test_sqlite_sessions_cancelled_mid_commit_leak_nothing(sqlite_db: Database) -> None:
    outcome: Counter[str] = Counter()

    async def one(arrivals: Arrivals) -> None:
        async with sqlite_db.session() as session:
            session.add(CancelItem(note="x"))  # flushed (and slowed) inside commit()
            outcome["committing"] += 1
            arrivals.arrive()
        outcome["committed"] += 1

    await _cancel_in_waves(one)

    assert outcome["committing"] == TOTAL
    # Writers queue for the write lock, so a few commit before the cancellation; the point is
    # that none of the cancelled ones leaves a lock or a connection behind.
    assert outcome["committed"] < TOTAL
    await _assert_sqlite_released(sqlite_db)


async def test_sqlite_requests_cancelled_by_client_timeout_leak_nothing(
    sqlite_db: Database, outcome: Counter[str]
) -> None:
    app = _sleep_app(sqlite_db, SQLITE_QUERY, outcome)
    timed_out = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal timed_out
        with anyio.move_on_after(SQLITE_CANCEL_AFTER) as scope:
            await client.post("/items")
        timed_out += scope.cancelled_caught

    async with sqlite_db.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await _in_waves(lambda: one(client))
            assert timed_out == TOTAL
            await _assert_sqlite_released(sqlite_db)


# A statement SQLite runs for about half a minute; only sqlite3_interrupt() ends it early.
_LONG_SQLITE_STATEMENT = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300000000) "
    "SELECT count(*) FROM n"
)


@pytest.mark.parametrize("where", ["file", "memory"])
async def test_sqlite_statement_cancelled_mid_run_releases_the_write_lock_at_once(
    sqlite_url: str, where: str
) -> None:
    # Issue 9, finding 9: a cancelled statement ran on in aiosqlite's thread, and the
    # session's close waited behind it with the write lock (and the write turn) held: the
    # next writer failed after its busy timeout. Here the next writer starts as soon as the
    # first is cancelled, with every wait bounded at 1 s, far below the statement's run time.
    url = sqlite_url if where == "file" else "sqlite+aiosqlite://"
    db = Database(url, session_class=AsyncSession, sqlite_busy_timeout=1.0, pool_timeout=1.0)
    cancelled = anyio.Event()

    async def first_writer() -> None:
        with anyio.move_on_after(0.3) as scope:
            async with db.session() as session:
                await session.execute(text("INSERT INTO cancel_item (note) VALUES ('first')"))
                await session.execute(text(_LONG_SQLITE_STATEMENT))
        assert scope.cancelled_caught

    async def next_writer() -> None:
        await anyio.sleep(0.35)  # the first one's cancellation is under way
        cancelled.set()
        async with db.session() as session:
            await session.execute(text("INSERT INTO cancel_item (note) VALUES ('next')"))

    async with db:
        await _create_schema(db, SQLITE_SCHEMA[:1])  # the table, without the slow trigger
        async with anyio.create_task_group() as group:
            group.start_soon(first_writer)
            group.start_soon(next_writer)
        assert cancelled.is_set()
        async with db.read_session() as session:
            notes = (await session.scalars(text("SELECT note FROM cancel_item"))).all()
        assert notes == ["next"]  # the cancelled transaction was rolled back, the next kept
        assert db.pool_status().checked_out == 0
