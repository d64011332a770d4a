"""Several databases in one app, each request's rows in the right one (issue 17.4).

`SessionDep` serves the app's own Database; `database_dependencies(db)` gives the same
dependencies bound to another one (here an "analytics" SQLite file beside the main database).
"""

# No `from __future__ import annotations`: the aliases are made per test inside build_app,
# and FastAPI resolves string annotations in the module's globals only.
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, select

from sessionwise import Database
from sessionwise.fastapi import SessionDep, database_dependencies, install_error_handlers


class SeveralModel(SQLModel, registry=registry()):
    """Tables of this module, created in both databases."""


class Sale(SeveralModel, table=True):
    __tablename__ = "several_sale"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)


async def create_tables(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(SeveralModel.metadata.create_all)


@pytest.fixture
async def main_db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url, pool_size=2) as db:
        await create_tables(db)
        yield db


@pytest.fixture
async def analytics(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(f"sqlite+aiosqlite:///{tmp_path / 'analytics.db'}", pool_size=2) as db:
        await create_tables(db)
        yield db


async def codes(db: Database) -> list[str]:
    async with db.read_session() as session:
        return sorted((await session.exec(select(Sale.code))).all())


def build_app(main_db: Database, analytics: Database) -> FastAPI:
    deps = database_dependencies(analytics)
    AnalyticsSession = Annotated[AsyncSession, deps.session]
    AnalyticsReader = Annotated[AsyncSession, deps.read_session]
    AnalyticsDatabase = Annotated[Database, deps.database]

    app = FastAPI()
    app.state.sessionwise_database = main_db
    install_error_handlers(app)  # what main_db.lifespan would do: no lifespan runs here

    @app.post("/main/{code}", status_code=201)
    async def to_main(code: str, session: SessionDep) -> None:
        session.add(Sale(code=code))

    @app.post("/analytics/{code}", status_code=201)
    async def to_analytics(code: str, session: AnalyticsSession) -> None:
        session.add(Sale(code=code))

    @app.post("/both/{code}", status_code=201)
    async def to_both(
        code: str, main: SessionDep, events: AnalyticsSession, reader: AnalyticsReader
    ) -> dict[str, int]:
        main.add(Sale(code=f"main-{code}"))
        events.add(Sale(code=f"analytics-{code}"))
        await events.flush()
        # The analytics read shares the analytics write session (one connection of its pool).
        seen = await reader.scalar(select(func.count()).select_from(Sale))
        return {"seen": seen or 0, "same": int(reader is events)}

    @app.get("/analytics")
    async def analytics_url(db: AnalyticsDatabase) -> str:
        return db.config.url

    return app


async def test_each_request_writes_to_the_database_its_dependencies_name(
    main_db: Database, analytics: Database
) -> None:
    app = build_app(main_db, analytics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/main/m1")).status_code == 201
        assert (await client.post("/analytics/a1")).status_code == 201
        both = await client.post("/both/b1")
        assert both.status_code == 201
        assert both.json() == {"seen": 2, "same": 1}
        # The same commit point and error answers: a duplicate is a 409, nothing stored.
        assert (await client.post("/analytics/a1")).status_code == 409
        assert (await client.get("/analytics")).json() == analytics.config.url

    assert await codes(main_db) == ["m1", "main-b1"]
    assert await codes(analytics) == ["a1", "analytics-b1"]
    assert main_db.pool_status().checked_out == 0
    assert analytics.pool_status().checked_out == 0
