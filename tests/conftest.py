"""Shared test setup: the anyio runner, and real SQLite / PostgreSQL databases per test.

PostgreSQL comes from ``TEST_POSTGRES_URL`` (default: the machine's server, database
``test``). Without a server, PostgreSQL tests skip locally with a one-line reason; under CI
(``CI=true``) they fail instead, so a missing server cannot hide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support.replication import Replicated, replicated_database, replicated_pair

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _postgres_answers() -> str | None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    await connection.close()
    return None


@pytest.fixture(scope="session")
async def postgres_server() -> str:
    """The admin URL of a PostgreSQL server that answers, or a skip (a failure under CI)."""
    problem = await _postgres_answers()
    if problem is not None:
        message = f"PostgreSQL at {POSTGRES_URL} does not answer ({problem})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    name = f"sw_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for this test."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind: the test runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def application_name(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL ``application_name`` unique to this test, to find its backends."""
    test = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"sw_{test}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def pg_admin(postgres_server: str) -> AsyncIterator[asyncpg.Connection]:
    """A separate connection to the server, for watching and terminating the test's backends."""
    connection = await asyncpg.connect(_asyncpg_dsn(postgres_server))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def replicated() -> Iterator[Replicated]:
    """A throwaway primary and its streaming replica (tests/support/replication.py)."""
    with replicated_pair() as pair:
        yield pair


@pytest.fixture
def replicated_db(replicated: Replicated) -> Iterator[str]:
    """The name of a fresh database on `replicated`'s primary, streamed to its replica."""
    with replicated_database(replicated) as name:
        yield name
