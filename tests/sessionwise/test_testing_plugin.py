"""Meta-test of the ``sessionwise.testing`` plugin: tests isolated by it leave nothing behind.

A separate pytest process (pytester) runs ``plugin_usage/test_isolated_usage.py``, tests as a
user writes them, against one database this test owns and that outlives every inner test: a
SQLite file, or a PostgreSQL database created for it. The plugin is not named anywhere: the
inner process loads it through the ``pytest11`` entry point. Afterwards, a fresh connection
counts the rows the inner tests wrote: none. A control test in the same inner run writes
without the plugin, and its row is there, so the count can see committed work.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url

pytest_plugins = ["pytester"]

USAGE_TESTS = Path(__file__).parent / "plugin_usage" / "test_isolated_usage.py"
CONTROL_TEST = """
import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database


async def test_control_write_without_the_plugin() -> None:
    url = os.environ["SESSIONWISE_PLUGIN_TEST_URL"]
    async with Database(url, session_class=AsyncSession) as db, db.session() as session:
        await session.execute(text("CREATE TABLE plugin_control (id integer)"))
        await session.execute(text("INSERT INTO plugin_control VALUES (1)"))
"""
INNER_CONFIG = """
[pytest]
anyio_mode = auto
filterwarnings = error
"""
TABLES = ("plugin_note", "plugin_control")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def persistent_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database for the whole inner run; the outer test cleans it up."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'outlives_the_tests.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def _count_rows(url: str) -> dict[str, int]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        connection = sqlite3.connect(parsed.database)
        try:
            return {
                table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in TABLES
            }
        finally:
            connection.close()
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    fresh = await asyncpg.connect(dsn)
    try:
        return {table: await fresh.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
    finally:
        await fresh.close()


async def test_isolated_tests_leave_nothing_behind(
    pytester: pytest.Pytester, persistent_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_isolated_usage=USAGE_TESTS.read_text(), test_zz_control=CONTROL_TEST)
    pytester.makeini(INNER_CONFIG)
    monkeypatch.setenv("SESSIONWISE_PLUGIN_TEST_URL", persistent_url)

    result = await anyio.to_thread.run_sync(
        lambda: pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=90)
    )

    result.assert_outcomes(passed=5)
    assert await _count_rows(persistent_url) == {"plugin_note": 0, "plugin_control": 1}
