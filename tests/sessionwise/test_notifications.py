"""`PostgresListener` and `notify` against the real PostgreSQL server."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from sessionwise import Database
from sessionwise.notifications import PostgresListener, notify
from tests.support.pg_activity import terminate_backends
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
CHANNEL = "sw_test_channel"


async def test_a_notification_arrives_on_commit_only(
    postgres_url: str, application_name: str
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    states: list[bool] = []
    listener = PostgresListener(
        postgres_url,
        CHANNEL,
        received.put_nowait,
        on_state=states.append,
        application_name=f"{application_name}-listener",
    )
    async with Database(postgres_url) as db, listener:
        await wait_until(lambda: listener.connected, within=10)
        assert states == [True]
        async with db.session() as session:
            await notify(await session.connection(), CHANNEL, "rolled back")
            await session.rollback()
        async with db.session() as session:
            await notify(await session.connection(), CHANNEL, "first")
            await asyncio.sleep(0.2)
            assert received.empty()  # not before the commit
        assert await asyncio.wait_for(received.get(), 10) == "first"
        assert received.empty()  # the rolled back one never came
    assert not listener.connected
    assert states == [True, False]


async def test_the_listener_reconnects_after_its_connection_is_killed(
    postgres_url: str, pg_admin: asyncpg.Connection, application_name: str
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    states: list[bool] = []
    name = f"{application_name}-listener"
    listener = PostgresListener(
        postgres_url, CHANNEL, received.put_nowait, on_state=states.append, application_name=name
    )
    async with Database(postgres_url) as db, listener:
        await wait_until(lambda: listener.connected, within=10)
        assert await terminate_backends(pg_admin, name) == 1
        await wait_until(lambda: states == [True, False, True], within=15)
        async with db.session() as session:
            await notify(await session.connection(), CHANNEL, "after the restart")
        assert await asyncio.wait_for(received.get(), 10) == "after the restart"
