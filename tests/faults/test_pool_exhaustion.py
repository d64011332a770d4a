"""Fault 3: every pooled connection is stuck behind a table lock; more requests arrive.

Promise: a request that cannot get a connection answers 503 with ``Retry-After`` within
``pool_timeout`` (+0.5 s), instead of queueing without bound; it writes nothing. Once the lock
is gone, the stuck requests finish and new ones answer 2xx again.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest

from tests.faults.conftest import UNBOUNDED_LOCK_WAITS, Template, serve_clone
from tests.support.direct_sql import asyncpg_dsn, pg_fetch
from tests.support.load import Outcome, record
from tests.support.postgres_cluster import PostgresCluster
from tests.support.taskyard_api import create_project

pytestmark = pytest.mark.faults

POOL_SIZE = 2
MAX_OVERFLOW = 1
CAPACITY = POOL_SIZE + MAX_OVERFLOW
POOL_TIMEOUT = 1.5
REQUESTS = CAPACITY + 5
MARGIN = 0.5  # the promise: 503 within pool_timeout + this


@pytest.mark.timeout(60)
async def test_requests_beyond_pool_capacity_answer_503_in_time(
    cluster: PostgresCluster, template: Template, tmp_path: Path
) -> None:
    env = {
        **UNBOUNDED_LOCK_WAITS,  # the stuck requests wait for the lock until it is released
        "TASKYARD_DATABASE__POOL_SIZE": str(POOL_SIZE),
        "TASKYARD_DATABASE__MAX_OVERFLOW": str(MAX_OVERFLOW),
        "TASKYARD_DATABASE__POOL_TIMEOUT": str(POOL_TIMEOUT),
    }
    with serve_clone(cluster, template, tmp_path, env=env) as app:
        limits = httpx.Limits(max_connections=REQUESTS * 2)
        async with app.client(timeout=30, limits=limits) as client:
            project_id = await create_project(client)
            locker = await asyncpg.connect(asyncpg_dsn(app.database_url))
            try:
                transaction = locker.transaction()
                await transaction.start()
                await locker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")

                zero = time.monotonic()
                outcomes: list[Outcome] = []
                readiness: list[httpx.Response] = []

                async def create(index: int) -> None:
                    body = {"project_id": project_id, "title": f"locked-{index}"}
                    send = lambda: client.post("/api/v1/tasks", json=body)  # noqa: E731
                    outcomes.append(await record(send, body, zero))

                async def probe_readiness() -> None:
                    await anyio.sleep(0.3)  # after the burst took every connection
                    readiness.append(await client.get("/health/ready"))

                async with anyio.create_task_group() as group:
                    for index in range(REQUESTS):
                        group.start_soon(create, index)
                    group.start_soon(probe_readiness)
                    # Long enough for every request beyond capacity to have answered, if the
                    # promise holds; the stuck ones must not answer while the lock is held.
                    await anyio.sleep(POOL_TIMEOUT + MARGIN + 0.5)
                    during_lock = list(outcomes)
                    await transaction.rollback()  # release the lock
            finally:
                await locker.close()
            after_lock = list(outcomes)

            # The same burst again, lock gone: more requests than connections, all served.
            burst_end = len(outcomes)
            async with anyio.create_task_group() as group:
                for index in range(REQUESTS, 2 * REQUESTS):
                    group.start_soon(create, index)
            again = outcomes[burst_end:]
        rows = await pg_fetch(
            app.database_url, "SELECT title FROM tasks WHERE project_id = $1", project_id
        )

    report = "\n".join(o.describe() for o in after_lock + again)
    print(report)
    assert len(during_lock) == REQUESTS - CAPACITY, f"expected {CAPACITY} stuck requests"
    for outcome in during_lock:
        assert outcome.status == 503, report
        assert outcome.body["type"] == "/problems/service-unavailable"
        assert int(outcome.headers["retry-after"]) >= 1
        assert outcome.seconds <= POOL_TIMEOUT + MARGIN, report
    stuck = [o for o in after_lock if o not in during_lock]
    assert len(stuck) == CAPACITY
    assert all(o.status == 201 for o in stuck), report
    assert all(o.status == 201 for o in again), report

    assert readiness[0].status_code == 503, readiness[0].text
    assert readiness[0].json()["pool"]["checked_out"] == CAPACITY

    stored = sorted(row["title"] for row in rows)
    answered_2xx = sorted(o.sent["title"] for o in after_lock + again if o.status == 201)
    assert stored == answered_2xx, "503 answers must write nothing; 2xx answers must be stored"


BLOCKED_CREATES = 15  # more than taskyard's default pool of 10: some hold a connection, some wait
BLOCKED_READS = 5
ANSWER_WITHIN = 10.0  # seconds: the promise of taskyard's default timeouts


@pytest.mark.timeout(60)
async def test_requests_blocked_behind_a_lock_all_answer_503_with_the_default_settings(
    cluster: PostgresCluster, template: Template, tmp_path: Path
) -> None:
    # taskyard's defaults, untouched: lock_timeout turns every wait behind the lock into a
    # 503, for the requests that hold a pooled connection as for those queued for one.
    with serve_clone(cluster, template, tmp_path) as app:
        limits = httpx.Limits(max_connections=BLOCKED_CREATES + BLOCKED_READS + 2)
        async with app.client(timeout=ANSWER_WITHIN, limits=limits) as client:
            project_id = await create_project(client)
            locker = await asyncpg.connect(asyncpg_dsn(app.database_url))
            outcomes: list[Outcome] = []
            zero = time.monotonic()
            try:
                transaction = locker.transaction()
                await transaction.start()
                await locker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")

                async def create(index: int) -> None:
                    body = {"project_id": project_id, "title": f"blocked-{index}"}
                    send = lambda: client.post("/api/v1/tasks", json=body)  # noqa: E731
                    outcomes.append(await record(send, body, zero))

                async def read(index: int) -> None:
                    params = {"project_id": project_id}
                    send = lambda: client.get("/api/v1/tasks", params=params)  # noqa: E731
                    outcomes.append(await record(send, {"read": index}, zero))

                async with anyio.create_task_group() as group:
                    for index in range(BLOCKED_CREATES):
                        group.start_soon(create, index)
                    for index in range(BLOCKED_READS):
                        group.start_soon(read, index)
                # Every request answered (or hit the client's timeout) with the lock held.
                await transaction.rollback()
            finally:
                await locker.close()
        rows = await pg_fetch(
            app.database_url, "SELECT title FROM tasks WHERE project_id = $1", project_id
        )

    report = "\n".join(o.describe() for o in sorted(outcomes, key=lambda o: o.started))
    print(report)
    assert len(outcomes) == BLOCKED_CREATES + BLOCKED_READS
    unanswered = [o for o in outcomes if o.status is None]
    assert not unanswered, f"no answer within {ANSWER_WITHIN}s:\n{report}"
    for outcome in outcomes:
        assert outcome.status == 503, report
        assert outcome.body["type"] == "/problems/service-unavailable", report
        assert int(outcome.headers["retry-after"]) >= 1
    assert rows == [], "a 503 must write nothing"
