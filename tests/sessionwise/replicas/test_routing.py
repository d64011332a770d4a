"""Read routing on a real primary and streaming replica (throwaway clusters, loopback ports).

Which server ran a session is asked of the server itself (``pg_is_in_recovery()``), not of
the router.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from sessionwise import Database, SessionwiseError
from sessionwise.metrics.prometheus import PrometheusMetrics
from sessionwise.replicas import read_at_least, routed_server
from tests.sessionwise.metrics.scrape import scrape
from tests.support.replication import Replicated
from tests.support.waiting import wait_until

pytestmark = pytest.mark.replicas

ON_REPLICA = text("SELECT pg_is_in_recovery()")


@pytest.fixture
async def db(replicated: Replicated, replicated_db: str) -> AsyncIterator[Database]:
    primary_url, replica_url = replicated.urls(replicated_db)
    database = Database(
        primary_url,
        replica_urls=[replica_url],
        replica_max_lag=1.0,
        replica_check_interval=0.1,
        pool_timeout=3.0,
    )
    async with database:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE notes (body text)"))
        await wait_until(lambda: _healthy(database), within=15)
        yield database


def _healthy(db: Database) -> bool:
    return all(status.healthy for status in db.replica_status())


async def _ran_on_replica(db: Database, **options: object) -> bool:
    async with db.read_session(**options) as session:  # type: ignore[arg-type]
        return bool((await session.execute(ON_REPLICA)).scalar_one())


async def test_reads_run_on_the_replica_and_writes_on_the_primary(
    db: Database, replicated: Replicated
) -> None:
    async with db.session() as session:
        assert (await session.execute(ON_REPLICA)).scalar_one() is False
    async with db.read_session() as session:
        assert routed_server(session) == "pending"
        assert (await session.execute(ON_REPLICA)).scalar_one() is True
        assert routed_server(session).endswith(
            f":{replicated.replica.port}/{session.bind.url.database}"
        )  # type: ignore[union-attr]
    assert await _ran_on_replica(db, on_primary=True) is False


async def test_a_read_at_least_as_fresh_as_a_write_sees_it_on_a_paused_replica(
    db: Database, replicated: Replicated
) -> None:
    replicated.replica.pause_replay()
    async with db.session() as session:
        await session.execute(text("INSERT INTO notes VALUES ('mine')"))
    position = await db.primary_position()

    # Asked for: the primary, because the paused replica has not replayed the write.
    async with db.read_session(fresh_as=position) as session:
        rows = (await session.execute(text("SELECT body FROM notes"))).scalars().all()
        assert rows == ["mine"]
        assert (await session.execute(ON_REPLICA)).scalar_one() is False
        assert routed_server(session) == "primary"
    # Set later, before the first statement: the same.
    async with db.read_session() as session:
        read_at_least(session, position)
        assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 1
        with pytest.raises(SessionwiseError, match="first statement"):
            read_at_least(session, position)
    # Not asked for: the replica (still within replica_max_lag), which shows the old state.
    async with db.read_session() as session:
        assert (await session.execute(ON_REPLICA)).scalar_one() is True
        assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 0

    replicated.replica.resume_replay()
    await wait_until(
        lambda: any((s.replayed or 0) >= position for s in db.replica_status()), within=10
    )
    assert await _ran_on_replica(db, fresh_as=position)


async def test_lag_is_by_wal_position_and_does_not_grow_while_the_primary_is_idle(
    db: Database, replicated: Replicated
) -> None:
    async with db.session() as session:
        await session.execute(text("INSERT INTO notes VALUES ('last write')"))
    replicated.wait_replayed()
    await anyio.sleep(2.5)  # idle: 2.5 times replica_max_lag without a commit
    async with db.read_session() as session:
        replay_age = (
            await session.execute(
                text("SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())")
            )
        ).scalar_one()
        assert (await session.execute(ON_REPLICA)).scalar_one() is True
    # The last replayed commit is older than replica_max_lag, yet the replica is not behind.
    assert replay_age > 2.0
    (status,) = db.replica_status()
    assert status.healthy
    assert status.lag is not None
    assert status.lag < 1.0


async def test_a_replica_too_far_behind_is_skipped_and_used_again_once_it_catches_up(
    db: Database, replicated: Replicated
) -> None:
    replicated.replica.pause_replay()
    async with db.session() as session:
        await session.execute(text("INSERT INTO notes VALUES ('not replayed')"))
    await wait_until(lambda: not _healthy(db), within=10)
    (status,) = db.replica_status()
    assert status.problem is not None
    assert "behind" in status.problem
    assert not await _ran_on_replica(db)

    replicated.replica.resume_replay()
    await wait_until(lambda: _healthy(db), within=10)
    assert await _ran_on_replica(db)


async def test_a_stopped_replica_is_skipped_at_once_and_used_again_when_it_is_back(
    db: Database, replicated: Replicated
) -> None:
    assert await _ran_on_replica(db)  # a pooled connection to it exists
    replicated.replica.stop()
    # stop() blocked the event loop; a server's loop runs on and reads the pooled
    # connections' end-of-stream as it arrives, before any later request gets to the pool.
    await anyio.sleep(0.1)
    # Sent after it went away, before the monitor's next check: served by the primary.
    started = time.monotonic()
    async with db.read_session() as session:
        rows = (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one()
        assert rows == 0
        assert (await session.execute(ON_REPLICA)).scalar_one() is False
    assert time.monotonic() - started < 5.0
    assert not _healthy(db)
    for _ in range(5):
        assert not await _ran_on_replica(db)

    replicated.replica.start()
    await wait_until(lambda: _healthy(db), within=20)
    assert await _ran_on_replica(db)


async def test_replica_pools_are_metered_under_their_own_names(
    replicated: Replicated, replicated_db: str
) -> None:
    registry = CollectorRegistry()
    primary_url, replica_url = replicated.urls(replicated_db)
    database = Database(
        primary_url,
        replica_urls=[replica_url],
        replica_max_lag=1.0,
        replica_check_interval=0.1,
        metrics=PrometheusMetrics(registry),
    )
    async with database:
        await wait_until(lambda: _healthy(database), within=15)
        for _ in range(3):
            assert await _ran_on_replica(database)
        metrics = scrape(registry)
        replica = {"pool_name": "replica-1"}
        assert metrics.value("db_client_connection_create_time_seconds_count", **replica) >= 1
        assert metrics.value("db_client_connection_use_time_seconds_count", **replica) >= 3
        assert metrics.value("db_client_connection_count", state="used", **replica) == 0
