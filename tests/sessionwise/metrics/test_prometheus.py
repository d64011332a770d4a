"""sessionwise's pool and session metrics, read through Prometheus's own text parser.

Real sessions on a real SQLite file and the real PostgreSQL server move the counts as they
should: one wait and one use per session that ran a statement, one create per connection
opened, the outcome of each session by cause; a pool held to exhaustion shows the waiting
session as pending, then counts its timeout.
"""

from __future__ import annotations

import logging

import anyio
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from sessionwise import Database
from sessionwise.metrics import SESSION_LABEL_KEY
from sessionwise.metrics.prometheus import PrometheusMetrics
from tests.sessionwise.metrics.scrape import scrape
from tests.support.waiting import wait_until

SESSION = "sessionwise_session_duration_seconds_count"


async def _make_table(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY)"))


async def _insert_then_fail(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("INSERT INTO item (id) VALUES (4)"))
        raise ValueError("the app's own error")


async def test_counts_follow_real_sessions(database_url: str) -> None:
    registry = CollectorRegistry()
    async with Database(database_url, metrics=PrometheusMetrics(registry), pool_size=3) as db:
        await _make_table(db)
        for key in (1, 2, 3):
            async with db.session() as session:
                await session.execute(text("INSERT INTO item (id) VALUES (:id)"), {"id": key})
        for _ in range(2):
            async with db.read_session() as session:
                assert await session.scalar(text("SELECT count(*) FROM item")) == 3
        with pytest.raises(ValueError, match="the app's own"):
            await _insert_then_fail(db)
        with pytest.raises(IntegrityError):
            async with db.session() as session:
                await session.execute(text("INSERT INTO item (id) VALUES (1)"))

        metrics = scrape(registry)
        pool = {"pool_name": "primary"}
        # 1 table + 3 inserts + 2 reads + 1 rolled back + 1 failed: 8 sessions, each ran SQL.
        assert metrics.value("db_client_connection_wait_time_seconds_count", **pool) == 8
        assert metrics.value("db_client_connection_use_time_seconds_count", **pool) >= 8
        created = metrics.value("db_client_connection_create_time_seconds_count", **pool)
        assert 1 <= created <= 3
        assert metrics.value(SESSION, **pool, outcome="committed", cause="none") == 4
        assert metrics.value(SESSION, **pool, outcome="closed", cause="none") == 2
        assert metrics.value(SESSION, **pool, outcome="rolled_back", cause="none") == 1
        assert metrics.value(SESSION, **pool, outcome="failed", cause="integrity") == 1
        # Nothing checked out now: every connection the pool opened is idle.
        assert metrics.value("db_client_connection_count", state="used", **pool) == 0
        assert metrics.value("db_client_connection_count", state="idle", **pool) == created
        assert metrics.value("db_client_connection_max", **pool) == 3
        assert metrics.value("db_client_connection_pending_requests", **pool) == 0
        assert metrics.value("db_client_connection_timeouts_total", **pool) == 0
        assert metrics.types["db_client_connection_timeouts"] == "counter"
        assert metrics.types["db_client_connection_wait_time_seconds"] == "histogram"

        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            during = scrape(registry)
        assert during.value("db_client_connection_count", state="used", **pool) == 1

    # Closed: the pool is no longer reported.
    assert scrape(registry).value("db_client_connection_max", **pool) == 0


@pytest.mark.postgres
async def test_exhausted_pool_shows_pending_request_then_timeout(postgres_url: str) -> None:
    registry = CollectorRegistry()
    db = Database(postgres_url, metrics=PrometheusMetrics(registry), pool_size=1, pool_timeout=0.5)
    held = anyio.Event()
    release = anyio.Event()

    async def hold() -> None:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            held.set()
            await release.wait()

    async with db, anyio.create_task_group() as tasks:
        tasks.start_soon(hold)
        await held.wait()
        pending = anyio.Event()

        async def starved() -> None:
            with pytest.raises(Exception, match="pool_timeout"):
                async with db.session() as session:
                    await session.execute(text("SELECT 1"))
            pending.set()

        tasks.start_soon(starved)
        await wait_until(
            lambda: (
                scrape(registry).value("db_client_connection_pending_requests", pool_name="primary")
                == 1
            )
        )
        waiting = scrape(registry)
        assert waiting.value("db_client_connection_count", state="used", pool_name="primary") == 1
        await pending.wait()
        release.set()

    metrics = scrape(registry)
    assert metrics.value("db_client_connection_timeouts_total", pool_name="primary") == 1
    assert metrics.value("db_client_connection_pending_requests", pool_name="primary") == 0
    assert (
        metrics.value(SESSION, pool_name="primary", outcome="failed", cause="pool_exhausted") == 1
    )


@pytest.mark.postgres
async def test_read_pool_is_measured_under_its_own_name(postgres_url: str) -> None:
    registry = CollectorRegistry()
    options = {"read_sessions": "autocommit", "read_pool_size": 2, "pool_size": 4}
    async with Database(postgres_url, metrics=PrometheusMetrics(registry), **options) as db:
        async with db.read_session() as session:
            await session.execute(text("SELECT 1"))
        metrics = scrape(registry)
    assert metrics.value("db_client_connection_max", pool_name="read") == 2
    assert metrics.value("db_client_connection_max", pool_name="primary") == 4
    assert metrics.value(SESSION, pool_name="read", outcome="closed", cause="none") == 1
    assert metrics.value("db_client_connection_wait_time_seconds_count", pool_name="read") == 1


async def test_a_named_database_prefixes_its_pools(sqlite_url: str) -> None:
    registry = CollectorRegistry()
    async with Database(sqlite_url, metrics=PrometheusMetrics(registry), name="audit") as db:
        assert db.pool_name("primary") == "audit.primary"
        assert set(db.engines) == {"audit.primary"}
        assert scrape(registry).value("db_client_connection_max", pool_name="audit.primary") == 15


async def test_slow_session_warning_names_label_hold_time_and_statements(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sessionwise")
    async with Database(sqlite_url, slow_session_warning=60.0) as db, db.session() as session:
        await session.execute(text("SELECT 1"))  # well under a minute: no warning
    assert not caplog.records
    # No recorder: the warning needs none.
    async with Database(sqlite_url, slow_session_warning=0.05) as db, db.session() as session:
        session.info[SESSION_LABEL_KEY] = "GET /things/{thing_id}"
        await session.execute(text("SELECT 1"))
        await anyio.sleep(0.1)
        await session.execute(text("SELECT 2"))
    [record] = [r for r in caplog.records if r.name == "sessionwise"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "GET /things/{thing_id}" in message
    assert "2 statements" in message  # the two SELECTs (BEGIN and COMMIT are not statements)
    assert record.__dict__["statements"] == 2
    assert record.__dict__["hold_seconds"] >= 0.1
