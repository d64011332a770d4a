"""Fixtures for taskyard: one migrated database per backend, apps, and users with keys.

API tests use sessionwise's pytest plugin: ``api_client`` talks to the app through
``ASGITransport`` and every test's writes are rolled back at teardown (``isolated_db``).
The migrated databases (one SQLite file, one PostgreSQL database) are made once per session;
tests that need truly concurrent transactions use `running_app` on a fresh database instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url

from sessionwise import Database, DatabaseConfig
from taskyard.app import create_app, create_database
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService


def _admin_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def taskyard_sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    path = tmp_path_factory.mktemp("taskyard") / "api.db"
    async with create_database(Settings(database_url=f"sqlite+aiosqlite:///{path}")) as db:
        await upgrade(db)
        yield db


@pytest.fixture(scope="session")
async def taskyard_postgres_db(postgres_server: str) -> AsyncIterator[Database]:
    name = f"sw_test_taskyard_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_admin_dsn(postgres_server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
        async with create_database(Settings(database_url=url)) as db:
            await upgrade(db)
            yield db
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def sessionwise_database(request: pytest.FixtureRequest) -> Database:
    """The migrated database of each backend: tests using it run on both."""
    db: Database = request.getfixturevalue(f"taskyard_{request.param}_db")
    return db


@pytest.fixture
def sessionwise_app() -> FastAPI:
    # api_client runs the lifespan, which starts a Database of its own on this URL (in memory,
    # never used), then points the app at the isolated Database for the test.
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))


@dataclass(frozen=True)
class Actor:
    """A user and one of their API keys."""

    id: int
    email: str
    name: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def create_actor(db: Database, name: str = "user") -> Actor:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    async with db.session() as session:
        user, issued = await UserService(session).create_user(UserCreate(email=email, name=name))
    assert user.id is not None
    return Actor(id=user.id, email=email, name=name, api_key=issued.api_key)


@pytest.fixture
async def alice(isolated_db: Database) -> Actor:
    return await create_actor(isolated_db, "alice")


@pytest.fixture
async def bob(isolated_db: Database) -> Actor:
    return await create_actor(isolated_db, "bob")


class StatementCounter:
    """Counts the SQL statements an engine sends, while active."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.active = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.active:
            self.statements.append(statement)


@pytest.fixture
def count_statements(isolated_db: Database) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    event.listen(isolated_db.engine.sync_engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(isolated_db.engine.sync_engine, "before_cursor_execute", counter)


@asynccontextmanager
async def running_app(
    url: str, *, retry_base_delay: float = 0.0, **database_options: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The app with its real lifespan on *url* (migrated), not isolated: for concurrency.

    Failed attempts are retried after *retry_base_delay* seconds (no backoff by default, so
    that no test waits for one).
    """
    config = DatabaseConfig(application_name="taskyard-test", **database_options)
    settings = Settings(database_url=url, database=config, retry_base_delay=retry_base_delay)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = app.state.sessionwise_database
        assert isinstance(db, Database)
        await upgrade(db)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskyard") as client:
            yield client, db


def sqlite_file_url(directory: Path, name: str = "taskyard.db") -> str:
    return f"sqlite+aiosqlite:///{directory / name}"
