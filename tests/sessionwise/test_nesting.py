"""A write session opened while the same task has one open is a `NestedSessionError`, at once.

Issue 9, finding 3: an endpoint with ``SessionDep`` that flushes, then calls a helper doing
``async with db.session()`` got a misleading 503 on a SQLite file ("write lock not granted"), a
5 s wait and a 503 in memory, and passed under the test plugin. Now it is the same programming
error on every backend and under the plugin: raised before the inner session touches the
database, an app bug (500), with the fix in the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, NestedSessionError
from sessionwise.fastapi import AsyncSessionDep
from sessionwise.testing import isolated

SAFETY = 20.0  # seconds: a bound on a wait that must not happen, not a timing assertion
COUNT = text("SELECT count(*) FROM nest_note")


@pytest.fixture(params=["file", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["production", "plugin"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "memory":
        return "sqlite+aiosqlite://"
    found: str = request.getfixturevalue("sqlite_url" if backend == "file" else "postgres_url")
    return found


@pytest.fixture
async def db(url: str, mode: str) -> AsyncIterator[Database]:
    options = {"pool_timeout": 3.0, "sqlite_busy_timeout": 3.0, "session_class": AsyncSession}
    async with Database(url, **options) as database:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE nest_note (body varchar(50))"))
        context: AbstractAsyncContextManager[object] = (
            isolated(database) if mode == "plugin" else nullcontext()
        )
        async with context:
            yield database


async def add(db: Database, body: str) -> None:
    async with db.session() as session:
        await session.execute(text("INSERT INTO nest_note VALUES (:body)"), {"body": body})


async def count(db: Database) -> int | None:
    async with db.read_session() as session:
        return await session.scalar(COUNT)


async def test_nested_write_session_fails_at_once(db: Database) -> None:
    with anyio.fail_after(SAFETY):
        async with db.session() as outer:
            await outer.execute(text("INSERT INTO nest_note VALUES ('outer')"))
            with pytest.raises(NestedSessionError) as refused:
                await add(db, "inner")
            with pytest.raises(NestedSessionError):
                await db.run_transaction(lambda session: session.scalar(text("SELECT 1")))
    message = str(refused.value)
    assert "Pass the open session down" in message
    assert "in its own task" in message
    assert await count(db) == 1  # the outer session committed; nothing of the inner one


async def test_independent_work_in_its_own_task_may_open_a_session(db: Database) -> None:
    # Child tasks inherit the context, but they are other tasks: not nested.
    with anyio.fail_after(SAFETY):
        async with db.session() as outer:
            await asyncio.create_task(add(db, "from a task"))
            await outer.execute(text("INSERT INTO nest_note VALUES ('outer')"))
        async with db.session() as after:  # the same task, once the first has ended
            await after.execute(text("INSERT INTO nest_note VALUES ('after')"))
    assert await count(db) == 3


async def test_read_session_inside_a_write_session(db: Database, backend: str) -> None:
    # Allowed where it can work: its own transaction, which sees what was committed. An
    # in-memory SQLite database has one connection: there it would wait for itself.
    with anyio.fail_after(SAFETY):
        async with db.session() as outer:
            await outer.execute(text("SELECT 1"))
            if backend == "memory":
                with pytest.raises(NestedSessionError, match="single pooled connection"):
                    await count(db)
            else:
                assert await count(db) == 0


def nesting_app(db: Database) -> FastAPI:
    app = FastAPI()
    app.state.sessionwise_database = db

    async def audit(body: str) -> None:
        async with db.session() as session:  # the helper that should take the session instead
            await session.execute(text("INSERT INTO nest_note VALUES (:b)"), {"b": f"audit {body}"})

    @app.post("/notes", status_code=201)
    async def create(body: str, session: AsyncSessionDep) -> str:
        await session.execute(text("INSERT INTO nest_note VALUES (:body)"), {"body": body})
        await session.flush()
        await audit(body)
        return body

    return app


@asynccontextmanager
async def client_for(app: FastAPI, *, raise_errors: bool) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_nested_session_in_an_endpoint_is_a_500(db: Database) -> None:
    app = nesting_app(db)
    with anyio.fail_after(SAFETY):
        async with client_for(app, raise_errors=True) as client:
            with pytest.raises(NestedSessionError):
                await client.post("/notes", params={"body": "x"})
        async with client_for(app, raise_errors=False) as client:
            response = await client.post("/notes", params={"body": "x"})
    assert response.status_code == 500  # an app bug: not 503, no Retry-After
    assert "retry-after" not in response.headers
    assert await count(db) == 0
