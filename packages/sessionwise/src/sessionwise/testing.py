"""pytest plugin: each test's database work is rolled back at teardown.

Registered through the ``pytest11`` entry point, so installing ``sessionwise[testing]`` makes
the fixtures available. Tell it which database and app to use by defining two fixtures::

    @pytest.fixture
    async def sessionwise_database():
        async with Database(TEST_URL) as db:
            ...  # create the schema
            yield db

    @pytest.fixture
    def sessionwise_app(): return create_app()

Then use the fixtures below in async tests (run them with anyio's pytest plugin):

* ``isolated_db``: the `Database`, with every session it opens (request sessions and
  ``db.session()`` alike) joined to one outer transaction that is rolled back at teardown.
  Commits inside the test release savepoints instead (SQLAlchemy docs, "Joining a Session into
  an External Transaction (such as for test suites)", ``join_transaction_mode=
  "create_savepoint"``).
* ``db_session``: a session inside that transaction, for arranging and checking data.
* ``api_client``: an ``httpx.AsyncClient`` over the app through ``ASGITransport``.

All sessions of a test share the outer connection, so a test that needs truly concurrent
transactions (lock contention, claims racing each other) must use a non-isolated database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from sessionwise.app_hooks import run_app_hooks
from sessionwise.database import Database
from sessionwise.guards import READ_ONLY_KEY
from sessionwise.session_class import Session

__all__ = ["api_client", "db_session", "isolated", "isolated_db"]


@asynccontextmanager
async def isolated(db: Database[Any]) -> AsyncIterator[AsyncConnection]:
    """Join every session *db* opens to one transaction, rolled back when the block ends."""
    async with db.engine.connect() as connection:
        transaction = await connection.begin()
        saved = (db.session_factory, db.read_session_factory)
        join = "create_savepoint"
        db.session_factory = db._sessionmaker(connection, join_transaction_mode=join)
        db.read_session_factory = db._sessionmaker(
            connection, info={READ_ONLY_KEY: True}, join_transaction_mode=join
        )
        try:
            yield connection
        finally:
            db.session_factory, db.read_session_factory = saved
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def sessionwise_database() -> Database:
    """Override this fixture: return (or yield) a started `Database` with its schema."""
    raise pytest.UsageError(
        "define a fixture named `sessionwise_database` that yields a started Database "
        "(see sessionwise.testing)"
    )


@pytest.fixture
def sessionwise_app() -> Any:
    """Override this fixture: return the ASGI app that `api_client` talks to."""
    raise pytest.UsageError("define a fixture named `sessionwise_app` that returns the app")


@pytest.fixture
async def isolated_db(sessionwise_database: Database) -> AsyncIterator[Database]:
    """The test's `Database`, rolled back at teardown."""
    async with isolated(sessionwise_database):
        yield sessionwise_database


@pytest.fixture
async def db_session(isolated_db: Database) -> AsyncIterator[Session]:
    """A session in the test's transaction; committed when the test ends, then rolled back."""
    async with isolated_db.session() as session:
        yield session


@pytest.fixture
async def api_client(
    isolated_db: Database, sessionwise_app: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over the app, whose requests use the test's transaction."""
    sessionwise_app.state.sessionwise_database = isolated_db
    run_app_hooks(sessionwise_app, isolated_db)  # what the lifespan would do: error handlers
    transport = httpx.ASGITransport(app=sessionwise_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
