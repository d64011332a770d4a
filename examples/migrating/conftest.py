"""The tests' database: the app's module-level `db` reads TASKS_DB_URL when it is imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# There is no default database (sessionwise raises ConfigurationError without a URL), so the
# tests name theirs before anything imports the app: a SQLite file of their own, unless
# TASKS_DB_URL points elsewhere (a PostgreSQL test database, say). A file, not ":memory:":
# an in-memory database has one connection, which the test's outer transaction holds while
# the app's lifespan would need another.
_DIRECTORY = Path(tempfile.mkdtemp(prefix="tasks-tests-"))
os.environ.setdefault("TASKS_DB_URL", f"sqlite+aiosqlite:///{_DIRECTORY / 'tasks.db'}")


@pytest.fixture(scope="session", autouse=True)
def _remove_the_test_database() -> Iterator[None]:
    yield
    shutil.rmtree(_DIRECTORY, ignore_errors=True)
