"""The test plugin behaves like production where tests used to pass (or fail) only under it.

Issue 9, finding 4: under ``isolated_db`` read sessions accepted an ``INSERT``, and two tasks
each with their own ``db.session()`` failed with ``savepoint "sa_savepoint_2" does not exist``.
Issue 9, finding 5: ``api_client`` did not run the app's lifespan, and a request counted as
nested in the test's own session. Issue 17, finding 6: ``run_transaction(...,
isolation_level="SERIALIZABLE")`` failed in every test.

These tests use the plugin's fixtures in this process, with a `Database` of their own per test
(``sessionwise_database`` below), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, NestedSessionError
from sessionwise.errors import sqlstate
from sessionwise.fastapi import AsyncSessionDep

SAFETY = 20.0  # seconds: a bound on waits that must not hang, not a timing assertion
COUNT = text("SELECT count(*) FROM iso_note")
INSERT = text("INSERT INTO iso_note (body) VALUES (:body)")


async def bodies(db: Database) -> list[str]:
    async with db.read_session() as session:
        rows = await session.execute(text("SELECT body FROM iso_note ORDER BY body"))
        return [row[0] for row in rows]


async def add(db: Database, body: str) -> None:
    async with db.session() as session:
        await session.execute(INSERT, {"body": body})


@pytest.fixture
async def sessionwise_database(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url, session_class=AsyncSession, pool_timeout=5.0) as db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE iso_note (body varchar(50) UNIQUE)"))
        yield db


def refused_as_read_only(error: BaseException, backend: str) -> bool:
    if backend == "postgresql":
        return isinstance(error, DBAPIError) and sqlstate(error) == "25006"
    return isinstance(error, OperationalError) and "readonly database" in str(error)


# -- read sessions refuse writes (finding 4) ----------------------------------------------------


async def test_read_session_refuses_a_core_insert(isolated_db: Database) -> None:
    backend = isolated_db.engine.dialect.name
    async with isolated_db.read_session() as session:
        with pytest.raises(DBAPIError) as refused:
            await session.execute(INSERT, {"body": "sneaky"})
        assert refused_as_read_only(refused.value, backend)

    # The refusal ended with the read session: a write session writes again.
    await add(isolated_db, "written")
    assert await bodies(isolated_db) == ["written"]


async def test_read_session_refuses_writes_while_another_task_writes(
    isolated_db: Database,
) -> None:
    # A read session and a write session of separate tasks interleave on the one connection;
    # each keeps its own rule.
    backend = isolated_db.engine.dialect.name
    refusals: list[bool] = []
    reading, written = anyio.Event(), anyio.Event()

    async def reader() -> None:
        async with isolated_db.read_session() as session:
            assert await session.scalar(COUNT) == 0
            reading.set()
            await written.wait()
            try:
                await session.execute(INSERT, {"body": "from the reader"})
            except DBAPIError as error:
                refusals.append(refused_as_read_only(error, backend))

    async def writer() -> None:
        await reading.wait()
        await add(isolated_db, "from the writer")
        written.set()

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            group.start_soon(writer)
    assert refusals == [True]
    assert await bodies(isolated_db) == ["from the writer"]


async def test_write_session_inside_a_read_session_writes(isolated_db: Database) -> None:
    # Allowed in production (its own connection); under the plugin the write must neither be
    # refused by the read session's rule nor undone when the read session closes.
    async with isolated_db.read_session() as session:
        assert await session.scalar(COUNT) == 0
        await add(isolated_db, "inside a read")
        assert await session.scalar(COUNT) == 1
    assert await bodies(isolated_db) == ["inside a read"]


# -- concurrent sessions of separate tasks (finding 4) -----------------------------------------


async def test_concurrent_tasks_each_with_their_own_session(isolated_db: Database) -> None:
    async def write(body: str) -> None:
        async with isolated_db.session() as session:
            await session.execute(INSERT, {"body": f"{body} 1"})
            await anyio.lowlevel.checkpoint()  # let the other tasks interleave
            await session.execute(INSERT, {"body": f"{body} 2"})

    with anyio.fail_after(SAFETY):
        await asyncio.gather(*(write(f"task {n}") for n in range(4)))
    assert await bodies(isolated_db) == [f"task {n} {m}" for n in range(4) for m in (1, 2)]
    assert isolated_db.pool_status().checked_out == 1  # the test's own connection only


async def test_a_failing_task_rolls_back_only_its_own_work(isolated_db: Database) -> None:
    class Refused(Exception):
        pass

    async def fail() -> None:
        async with isolated_db.session() as session:
            await session.execute(INSERT, {"body": "rolled back"})
            await anyio.lowlevel.checkpoint()
            raise Refused

    with anyio.fail_after(SAFETY):
        results = await asyncio.gather(
            add(isolated_db, "kept"), fail(), add(isolated_db, "kept too"), return_exceptions=True
        )
    assert [type(result) for result in results] == [type(None), Refused, type(None)]
    assert await bodies(isolated_db) == ["kept", "kept too"]


# -- isolation levels (issue 17, finding 6) ------------------------------------------------------


async def current_level(session: AsyncSession) -> str | None:
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        return "serializable"  # SQLite has one level
    level: str | None = await session.scalar(text("SHOW transaction_isolation"))
    return level


async def test_run_transaction_with_an_isolation_level_runs(isolated_db: Database) -> None:
    async def work(session: AsyncSession) -> str | None:
        await session.execute(INSERT, {"body": "serializable work"})
        return await current_level(session)

    level = await isolated_db.run_transaction(work, isolation_level="SERIALIZABLE")
    # Unmarked: the outer transaction's level (PostgreSQL's default), not the requested one.
    if isolated_db.engine.dialect.name == "postgresql":
        assert level == "read committed"
    assert await bodies(isolated_db) == ["serializable work"]


@pytest.mark.sessionwise_isolation_level("SERIALIZABLE")
async def test_the_mark_begins_the_outer_transaction_at_a_level(isolated_db: Database) -> None:
    async def work(session: AsyncSession) -> str | None:
        return await current_level(session)

    assert await isolated_db.run_transaction(work, isolation_level="SERIALIZABLE") == (
        "serializable"
    )


# -- api_client: lifespan, a task per request (finding 5) ---------------------------------------


def build_app(own_url: str) -> FastAPI:
    """An app whose lifespan makes a Database of its own, as taskyard's create_app does."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.startup_ran = True
        async with Database(own_url, session_class=AsyncSession).lifespan(app):
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/notes", status_code=201)
    async def create(body: str, session: AsyncSessionDep) -> str:
        await session.execute(INSERT, {"body": body})
        return body

    @app.post("/notes/nested", status_code=201)
    async def nested(body: str, session: AsyncSessionDep) -> str:
        await session.execute(INSERT, {"body": body})
        db = app.state.sessionwise_database
        async with db.session() as inner:  # should have used `session`
            await inner.execute(INSERT, {"body": f"{body} again"})
        return body

    @app.post("/notes/later", status_code=202)
    async def later(body: str, tasks: BackgroundTasks) -> str:
        tasks.add_task(add, app.state.sessionwise_database, body)
        return body

    @app.get("/startup")
    async def startup() -> bool:
        return bool(getattr(app.state, "startup_ran", False))

    return app


@pytest.fixture
def sessionwise_app(sqlite_url: str) -> FastAPI:
    return build_app(sqlite_url.replace("test.db", "apps_own.db"))


async def test_api_client_runs_the_lifespan_and_uses_the_isolated_database(
    api_client: httpx.AsyncClient, isolated_db: Database, sessionwise_app: FastAPI
) -> None:
    assert (await api_client.get("/startup")).json() is True
    # The lifespan's own Database was replaced by the isolated one for the test.
    assert sessionwise_app.state.sessionwise_database is isolated_db
    assert (await api_client.post("/notes", params={"body": "a"})).status_code == 201
    assert (await api_client.post("/notes/later", params={"body": "b"})).status_code == 202
    assert await bodies(isolated_db) == ["a", "b"]


async def test_requests_are_not_nested_in_the_tests_session(
    api_client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    # The test holds a write session; a request is served in a task of its own, as by a
    # server, so its SessionDep is not a nested session.
    await db_session.execute(INSERT, {"body": "arranged"})
    assert (await api_client.post("/notes", params={"body": "requested"})).status_code == 201
    assert (await api_client.post("/notes", params={"body": "arranged"})).status_code == 409
    assert await db_session.scalar(COUNT) == 2


async def test_a_nested_session_in_a_request_fails_under_the_plugin_too(
    api_client: httpx.AsyncClient, isolated_db: Database
) -> None:
    with pytest.raises(NestedSessionError):
        await api_client.post("/notes/nested", params={"body": "x"})
    assert await bodies(isolated_db) == []


class TestWithoutTheLifespan:
    @pytest.fixture
    def sessionwise_run_lifespan(self) -> bool:
        return False

    async def test_the_lifespan_does_not_run(
        self, api_client: httpx.AsyncClient, isolated_db: Database
    ) -> None:
        assert (await api_client.get("/startup")).json() is False
        assert (await api_client.post("/notes", params={"body": "a"})).status_code == 201
        assert await bodies(isolated_db) == ["a"]
