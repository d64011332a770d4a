"""The request's session dependencies: one pooled connection per request, typed both ways.

Issue 17.1: a user dependency taking `ReadSessionDep` and a route taking `SessionDep` held
two pooled connections per request; under load every request held one and waited for the
second (pool_size=5, 200 requests at 30 concurrent: 10 x 200, 190 x 503). Issue 9.6: the
dependencies were typed for SQLModel's session only.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from sessionwise import Database, ReadOnlySessionError
from sessionwise.fastapi import (
    AsyncReadSessionDep,
    AsyncSessionDep,
    ReadSessionDep,
    SessionDep,
)


class DependencyModel(SQLModel, registry=registry()):
    """Tables of this module, kept out of SQLModel.metadata that other code creates whole."""


class Order(DependencyModel, table=True):
    __tablename__ = "dependency_order"

    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(max_length=50)


REQUESTS = 200
CONCURRENCY = 30


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    # The setting: a pool of 5, two seconds to get a connection.
    async with Database(database_url, pool_size=5, pool_timeout=2.0) as database:
        async with database.engine.begin() as connection:
            await connection.run_sync(DependencyModel.metadata.create_all)
        yield database


class CheckoutsPerRequest:
    """Pooled connections each request (its asyncio task) holds at once, from pool events."""

    def __init__(self, db: Database) -> None:
        self.holding: Counter[asyncio.Task[Any] | None] = Counter()
        self.owner: dict[int, asyncio.Task[Any] | None] = {}
        self.most = 0
        engine = db.engine.sync_engine
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        task = asyncio.current_task()
        self.owner[id(record)] = task
        self.holding[task] += 1
        self.most = max(self.most, self.holding[task])

    def _checkin(self, _dbapi: Any, record: Any) -> None:
        task = self.owner.pop(id(record), None)
        self.holding[task] -= 1


async def current_user(session: ReadSessionDep) -> str:
    """A typical auth dependency: a read in the request's read session."""
    assert await session.scalar(text("SELECT 1")) == 1
    return "ada"


CurrentUser = Annotated[str, Depends(current_user)]


def build_app(db: Database) -> FastAPI:
    app = FastAPI()

    @app.post("/orders", status_code=201)
    async def create_order(user: CurrentUser, session: SessionDep) -> dict[str, int]:
        order = Order(user=user)
        session.add(order)
        await session.flush()
        await anyio.sleep(0.005)  # a little work while both sessions are in use
        assert order.id is not None
        return {"id": order.id}

    @app.post("/orders/seen")
    async def write_then_read(session: SessionDep, reader: ReadSessionDep) -> dict[str, int]:
        session.add(Order(user="bob"))
        await session.flush()
        # The read runs in the request's transaction: it sees the request's own write.
        seen = await reader.scalar(select(func.count()).select_from(Order))
        return {"seen": seen or 0}

    @app.post("/orders/read-only")
    async def write_in_read_session(session: ReadSessionDep) -> None:
        session.add(Order(user="eve"))
        await session.flush()

    @app.post("/orders/plain", status_code=201)
    async def create_plain(
        session: AsyncSessionDep, reader: AsyncReadSessionDep
    ) -> dict[str, bool]:
        session.add(Order(user="sam"))
        return {"same": session is reader}

    return app


async def test_a_read_and_a_write_session_hold_one_connection_under_load(db: Database) -> None:
    checkouts = CheckoutsPerRequest(db)
    app = build_app(db)
    app.state.sessionwise_database = db
    statuses: Counter[int] = Counter()
    limit = anyio.Semaphore(CONCURRENCY)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def one() -> None:
            async with limit:
                statuses[(await client.post("/orders")).status_code] += 1

        with anyio.fail_after(120):  # a safety net only
            async with anyio.create_task_group() as group:
                for _ in range(REQUESTS):
                    group.start_soon(one)

    assert statuses == {201: REQUESTS}
    assert checkouts.most == 1, f"a request held {checkouts.most} connections at once"
    assert db.pool_status().checked_out == 0
    async with db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == REQUESTS


async def test_the_shared_session_reads_the_requests_own_writes(db: Database) -> None:
    app = build_app(db)
    app.state.sessionwise_database = db
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.post("/orders/seen")).json() == {"seen": 1}
        assert (await client.post("/orders/plain")).json() == {"same": True}
    async with db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 2


async def test_a_read_session_alone_still_refuses_writes(db: Database) -> None:
    app = build_app(db)
    app.state.sessionwise_database = db
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        with pytest.raises(ReadOnlySessionError):
            await client.post("/orders/read-only")


async def test_session_dep_on_a_plain_sqlalchemy_database_names_the_right_alias(
    sqlite_url: str,
) -> None:
    async with Database(sqlite_url, session_class=AsyncSession) as db:
        app = FastAPI()
        app.state.sessionwise_database = db

        @app.get("/sqlmodel")
        async def typed_for_sqlmodel(session: SessionDep) -> int:
            return (await session.exec(select(1))).one()  # no exec() on this session

        @app.get("/plain")
        async def typed_plain(session: AsyncSessionDep) -> int | None:
            return await session.scalar(select(1))

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            assert (await client.get("/plain")).json() == 1
            with pytest.raises(TypeError, match="declare the parameter as AsyncSessionDep"):
                await client.get("/sqlmodel")
