"""`Database.lifespan`: what it starts it closes, what it publishes on app.state it removes.

Several databases on one app: the unnamed one is ``app.state.sessionwise_database``, named ones
``app.state.sessionwise_databases[name]``; a second one under a taken name fails at startup
instead of silently re-pointing every ``SessionDep`` (issue 17, finding 4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, DatabaseStateError
from sessionwise.fastapi import AsyncSessionDep


def file_url(tmp_path: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}.db"


def app_reporting_its_database() -> FastAPI:
    app = FastAPI()

    @app.get("/which")
    async def which(session: AsyncSessionDep) -> str | None:
        return await session.scalar(text("SELECT name FROM whoami"))

    return app


async def label(db: Database, name: str) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE whoami (name text)"))
        await session.execute(text("INSERT INTO whoami VALUES (:name)"), {"name": name})


async def test_lifespan_closes_and_unpublishes_what_it_started(database_url: str) -> None:
    db = Database(database_url)
    app = FastAPI()
    async with db.lifespan(app):
        assert db.started
        assert app.state.sessionwise_database is db
    assert not db.started
    assert not hasattr(app.state, "sessionwise_database")


async def test_lifespan_leaves_an_already_started_database_open(database_url: str) -> None:
    # A test fixture (or an outer `async with db`) started it: leaving the app's lifespan must
    # not close it under the next test (issue 9, finding 5).
    db = Database(database_url)
    app = FastAPI(lifespan=db.lifespan)
    async with db:
        for _ in range(2):  # one app started twice, as by two tests in a row
            async with app.router.lifespan_context(app):
                assert app.state.sessionwise_database is db
            assert db.started
            assert not hasattr(app.state, "sessionwise_database")
            async with db.session() as session:
                assert await session.scalar(text("SELECT 1")) == 1
    assert not db.started


async def test_the_same_database_entered_twice_on_one_app_is_fine(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    app = FastAPI()
    async with db.lifespan(app):
        async with db.lifespan(app):
            assert app.state.sessionwise_database is db
        # The inner exit neither closed it nor took it off the app.
        assert db.started
        assert app.state.sessionwise_database is db
    assert not db.started


async def test_a_second_unnamed_database_fails_at_startup(tmp_path: Path) -> None:
    main_db = Database(file_url(tmp_path, "main"))
    analytics = Database(file_url(tmp_path, "analytics"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with main_db.lifespan(app), analytics.lifespan(app):
            yield

    app = FastAPI(lifespan=lifespan)
    with pytest.raises(DatabaseStateError, match=r'name="analytics"') as refused:
        async with app.router.lifespan_context(app):
            raise AssertionError("the app must not start")
    assert "app.state.sessionwise_database is already" in str(refused.value)
    # Nothing left running or published.
    assert not main_db.started
    assert not analytics.started
    assert not hasattr(app.state, "sessionwise_database")


async def test_named_databases_live_beside_the_unnamed_one(tmp_path: Path) -> None:
    main_db = Database(file_url(tmp_path, "main"), session_class=AsyncSession)
    analytics = Database(
        file_url(tmp_path, "analytics"), name="analytics", session_class=AsyncSession
    )
    app = app_reporting_its_database()
    async with main_db.lifespan(app), analytics.lifespan(app):
        await label(main_db, "main")
        await label(analytics, "analytics")
        assert app.state.sessionwise_database is main_db
        assert app.state.sessionwise_databases == {"analytics": analytics}

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/which")).json() == "main"  # not re-pointed

        again = Database(file_url(tmp_path, "other"), name="analytics")
        with pytest.raises(DatabaseStateError, match=r"sessionwise_databases\['analytics'\]"):
            async with again.lifespan(app):
                raise AssertionError("never entered")
        assert app.state.sessionwise_databases == {"analytics": analytics}
    assert app.state.sessionwise_databases == {}
    assert not hasattr(app.state, "sessionwise_database")
    assert repr(analytics).startswith("<Database name='analytics' sqlite+aiosqlite:///")
