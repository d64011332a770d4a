"""Expired idempotency records go: by ``taskyard purge`` and by the server's periodic purge."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from sqlalchemy import select, text

from sessionwise import Database
from sessionwise.idempotency import KeyedRequest, StoredAnswer
from taskyard.app import create_app, create_database
from taskyard.idempotency import create_store, idempotency_keys, purge_periodically
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from tests.taskyard.conftest import create_actor
from tests.taskyard.test_cli import taskyard

DAY = timedelta(hours=24)


async def _add_records(db: Database, *, expired: int, live: int) -> None:
    store = create_store(Settings())
    answer = StoredAnswer(201, b"{}", {"content-type": "application/json"})
    long_ago = datetime.now(UTC) - 2 * DAY
    async with db.session() as session:
        for n in range(expired):
            await store.save(session, KeyedRequest("1", f"old-{n}", "f"), answer, now=long_ago)
        for n in range(live):
            await store.save(session, KeyedRequest("1", f"new-{n}", "f"), answer)


async def _keys(db: Database) -> set[str]:
    async with db.read_session() as session:
        connection = await session.connection()
        return set((await connection.execute(select(idempotency_keys.c.key))).scalars())


async def test_taskyard_purge_deletes_only_expired_records(database_url: str) -> None:
    async with create_database(Settings(database_url=database_url)) as db:
        await upgrade(db)
        await _add_records(db, expired=7, live=2)
    result = await taskyard("purge", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "Purged 7 expired idempotency records" in result.output
    async with create_database(Settings(database_url=database_url)) as db:
        assert await _keys(db) == {"new-0", "new-1"}
    again = await taskyard("purge", "--database-url", database_url)
    assert "Purged 0 " in again.output


async def test_purge_works_in_batches(database_url: str) -> None:
    async with create_database(Settings(database_url=database_url)) as db:
        await upgrade(db)
        await _add_records(db, expired=23, live=1)
        assert await create_store(Settings()).purge(db, batch_size=5) == 23
        assert await _keys(db) == {"new-0"}


# Issue 10: this test once hung in about one full-suite run in four. The lifespan cancelled
# its purge task just as the task got a pool or write turn, and asyncio.wait_for (Python 3.11)
# dropped the cancellation: the task purged on forever and the lifespan waited for it
# (tests/sessionwise/test_native_cancellation.py holds the race itself).
async def test_the_server_purges_on_a_schedule_while_serving(database_url: str) -> None:
    settings = Settings(database_url=database_url, idempotency_purge_interval=0.05)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = app.state.sessionwise_database
        await upgrade(db)
        actor = await create_actor(db)
        await _add_records(db, expired=2, live=1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with anyio.fail_after(20):
                while await _keys(db) != {"new-0"}:
                    me = await client.get("/api/v1/users/me", headers=actor.headers)
                    assert me.status_code == 200
                    await anyio.sleep(0.05)


async def test_a_failing_purge_is_logged_and_retried(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with create_database(Settings(database_url=sqlite_url)) as db:
        await upgrade(db)
        async with db.session() as session:
            await (await session.connection()).execute(text("DROP TABLE idempotency_keys"))
        store = create_store(Settings())
        caplog.set_level(logging.ERROR, logger="taskyard")
        async with anyio.create_task_group() as group:
            group.start_soon(purge_periodically, db, store, 0.02)
            with anyio.fail_after(20):
                while len(caplog.records) < 2:  # noqa: ASYNC110  (it goes on after failing)
                    await anyio.sleep(0.02)
            group.cancel_scope.cancel()
        assert all(
            "purging expired idempotency records failed" in r.message for r in caplog.records
        )
