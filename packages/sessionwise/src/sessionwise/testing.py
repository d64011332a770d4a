"""pytest plugin: each test's database work is rolled back at teardown, as in production.

Registered through the ``pytest11`` entry point, so installing ``sessionwise[testing]`` makes
the fixtures available. Tell it which database and app to use by defining two fixtures, best
with the app's own (module-level) `Database`, which may be started again for every test::

    from myapp import app, db

    @pytest.fixture
    async def sessionwise_database():
        async with db:                  # started for this test, closed after it
            ...  # create the schema
            yield db

    @pytest.fixture
    def sessionwise_app(): return app

Then use the fixtures below in async tests, run by anyio's pytest plugin (``anyio_mode =
"auto"`` in the pytest configuration, or ``@pytest.mark.anyio`` on each test):

* ``isolated_db``: the `Database`, with every session it opens (request sessions and
  ``db.session()`` alike, also in background jobs that import the module-level ``db``) joined
  to one outer transaction that is rolled back at teardown. Commits inside the test release
  savepoints instead (SQLAlchemy docs, "Joining a Session into an External Transaction (such as
  for test suites)", ``join_transaction_mode="create_savepoint"``). Sessions of separate tasks
  take turns on that connection (`sessionwise.shared_connection`); read sessions refuse writes.
* ``db_session``: a session inside that transaction, for arranging and checking data.
* ``api_client``: an ``httpx.AsyncClient`` over the app through ``ASGITransport``. It runs the
  app's lifespan (startup code runs; the app's own `Database` is started, or left alone when
  the test already started it), then points the app at the isolated `Database` (also when the
  lifespan made a `Database` of its own), and serves each request in a task of its own, as a
  server does. Opt out of the lifespan by overriding ``sessionwise_run_lifespan`` to return
  False.

Isolation levels: the outer transaction begins at the database's default level, and
``run_transaction(..., isolation_level=...)`` inside a test runs at that level (PostgreSQL fixes
a transaction's level at its first statement). Mark a test
``@pytest.mark.sessionwise_isolation_level("SERIALIZABLE")`` to begin its outer transaction at
that level instead (PostgreSQL; SQLite transactions are serializable anyway).

What is not isolated like production: all sessions of a test share one connection, so a session
sees what another one flushed but has not committed, and tests of truly concurrent transactions
(lock contention, claims racing each other) need a non-isolated database. docs/testing.md has
the full list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from sessionwise.app_hooks import run_app_hooks
from sessionwise.app_state import pointed_at
from sessionwise.database import Database
from sessionwise.guards import CALL_GATE_KEY, READ_ONLY_KEY
from sessionwise.session_class import Session
from sessionwise.shared_connection import SharedConnectionTurns

__all__ = [
    "api_client",
    "db_session",
    "isolated",
    "isolated_db",
    "sessionwise_isolation_level",
    "sessionwise_run_lifespan",
]

_ISOLATION_MARKER = "sessionwise_isolation_level"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_ISOLATION_MARKER}(level): begin the test's outer transaction (sessionwise.testing) "
        'at this isolation level, e.g. "SERIALIZABLE"',
    )


@asynccontextmanager
async def isolated(
    db: Database[Any], *, isolation_level: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """Join every session *db* opens to one transaction, rolled back when the block ends.

    Args:
        db: A started `Database`, of either session class.
        isolation_level: Begin the outer transaction at this level (PostgreSQL); None: the
            database's default. Sessions inside cannot change it.
    """
    async with db.engine.connect() as connection:
        if isolation_level is not None and connection.dialect.name != "sqlite":
            await connection.execution_options(isolation_level=isolation_level)
        transaction = await connection.begin()
        saved = (db.session_factory, db.read_session_factory)
        turns = SharedConnectionTurns(connection, db.config.pool_timeout)
        db.session_factory = db._sessionmaker(
            connection, info={CALL_GATE_KEY: turns}, join_transaction_mode="create_savepoint"
        )
        # No savepoint for read sessions: they write nothing to roll back, and a savepoint of
        # theirs, rolled back at their close, would take the writes of sessions begun after
        # them along (sessionwise.shared_connection).
        db.read_session_factory = db._sessionmaker(
            connection,
            info={READ_ONLY_KEY: True, CALL_GATE_KEY: turns},
            join_transaction_mode="rollback_only",
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
def sessionwise_run_lifespan() -> bool:
    """Whether `api_client` runs the app's lifespan; override it to return False to skip it."""
    return True


@pytest.fixture
def sessionwise_isolation_level(request: pytest.FixtureRequest) -> str | None:
    """The outer transaction's isolation level: the test's ``sessionwise_isolation_level`` mark."""
    marker = request.node.get_closest_marker(_ISOLATION_MARKER)
    if marker is None:
        return None
    level: str = marker.args[0]
    return level


@pytest.fixture
async def isolated_db(
    sessionwise_database: Database, sessionwise_isolation_level: str | None
) -> AsyncIterator[Database]:
    """The test's `Database`, rolled back at teardown."""
    async with isolated(sessionwise_database, isolation_level=sessionwise_isolation_level):
        yield sessionwise_database


@pytest.fixture
async def db_session(isolated_db: Database) -> AsyncIterator[Session]:
    """A session in the test's transaction; committed when the test ends, then rolled back."""
    async with isolated_db.session() as session:
        yield session


@pytest.fixture
async def api_client(
    isolated_db: Database, sessionwise_app: Any, sessionwise_run_lifespan: bool
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over the app, its lifespan run, whose requests use the test's transaction."""
    async with AsyncExitStack() as stack:
        router = getattr(sessionwise_app, "router", None)
        if sessionwise_run_lifespan and router is not None:
            # Starlette's lifespan, as a server enters it: startup code runs.
            await stack.enter_async_context(router.lifespan_context(sessionwise_app))
        if getattr(sessionwise_app, "state", None) is not None:
            stack.enter_context(pointed_at(sessionwise_app, isolated_db))
        # What the lifespan does (the hooks are idempotent), also when it was skipped: e.g.
        # sessionwise.fastapi's error handlers.
        run_app_hooks(sessionwise_app, isolated_db)
        transport = httpx.ASGITransport(app=_TaskPerRequest(sessionwise_app))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        yield await stack.enter_async_context(client)


class _TaskPerRequest:
    """An ASGI app that serves each request of *app* in a task of its own, as servers do.

    ``ASGITransport`` calls the app in the test's own task. A server runs every request in a
    task of its own, and sessionwise tells tasks apart (a write session opened while the same
    task has one open is a `NestedSessionError`), so a request must not count as nested in the
    test's ``db_session``.
    """

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        # Awaiting the task re-raises its exception as it is, and cancelling the await cancels it.
        await asyncio.ensure_future(self._app(scope, receive, send))
