"""Issue 12, point 6: many workers, few connections.

``taskyard serve --workers 4`` through one PgBouncer in transaction mode with 10 server
connections (each worker's pool alone would take 10). Under the benchmark's mixed load
(wrk and bench/lua/calls.lua: get, list, create, patch at 32 connections) no answer is an
error; 16 concurrent claimers then drain a stock of pending tasks, and every task is handed
out exactly once. The database is seeded as the benchmark seeds its own (bench/databases.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest

from bench import databases
from bench.wrk import Target, run_wrk
from tests.support.direct_sql import asyncpg_dsn, pg_fetch
from tests.support.pgbouncer import running_pgbouncer
from tests.support.served_app import User, serve_taskyard
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.pgbouncer]

WORKERS = 4
SERVER_CONNECTIONS = 10
STOCK = 400  # pending tasks for the claimers
CLAIMERS = 16
MIXED_SECONDS = 4


async def _server_backends(url: str) -> int:
    """Client backends on the test's database right now (PgBouncer's server connections)."""
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return int(count)
    finally:
        await connection.close()


@pytest.mark.timeout(180)
async def test_four_workers_share_ten_server_connections_without_errors(
    postgres_url: str, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(databases.migrate, postgres_url)
    api_key = await anyio.to_thread.run_sync(databases.create_api_key, postgres_url)
    seeded = await databases.seed(postgres_url, api_key, STOCK)
    ids_path = seeded.write_ids(tmp_path / "task-ids.txt")
    owner = User(email=databases.OWNER_EMAIL, name="Bench Owner", api_key=api_key)
    env = {"TASKYARD_DATABASE__PGBOUNCER": "true"}
    with (
        running_pgbouncer(postgres_url, pool_size=SERVER_CONNECTIONS) as bouncer,
        serve_taskyard(
            bouncer.url,
            tmp_path,
            env=env,
            extra_args=("--workers", str(WORKERS), "--no-migrate", "--no-access-log"),
            users=[owner],
        ) as app,
    ):
        # /health/ready answers as soon as one worker serves; the load is for all four.
        await wait_until(
            lambda: app.log().count("Application startup complete") == WORKERS, within=120
        )
        target = Target(
            base_url=app.base_url,
            api_key=api_key,
            project_id=str(seeded.project_id),
            ids_path=ids_path,
            worker_ids=tuple(str(worker) for worker in seeded.worker_ids),
        )
        peak: list[int] = []

        async def watch_backends(done: anyio.Event) -> None:
            while not done.is_set():
                peak.append(await _server_backends(postgres_url))
                await anyio.sleep(0.25)

        done = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(watch_backends, done)
            mixed = await anyio.to_thread.run_sync(
                lambda: run_wrk(target, "mixed", connections=32, duration_s=MIXED_SECONDS)
            )
            done.set()

        claimed = await _drain_the_stock(app.base_url, api_key, seeded.claimer_ids)
        log = app.log()

    print(f"mixed: {mixed.as_dict()}\nclaims: {len(claimed)}, peak server backends {max(peak)}")
    assert mixed.requests > 0
    assert mixed.failures == 0, f"{mixed.as_dict()}\n{log[-6000:]}"
    assert log.count("Started server process") == WORKERS, log[-3000:]  # none restarted
    assert max(peak) <= SERVER_CONNECTIONS, peak  # PgBouncer's pool is the ceiling

    counts = Counter(claimed)
    assert not [task for task, times in counts.items() if times > 1], counts.most_common(3)
    rows = await pg_fetch(
        postgres_url,
        "SELECT id, status, assignee_id FROM tasks WHERE project_id = $1",
        seeded.claim_project_id,
    )
    assert len(rows) == STOCK
    assert set(counts) == {row["id"] for row in rows}  # every task handed out, once
    assert all(row["status"] == "in_progress" for row in rows)
    by_task = {row["id"]: row["assignee_id"] for row in rows}
    assert all(by_task[task] in seeded.claimer_ids for task in counts)


async def _drain_the_stock(base_url: str, api_key: str, claimers: tuple[int, ...]) -> list[int]:
    """CLAIMERS concurrent loops of POST /tasks/claim until 204; the ids they were given."""
    claimed: list[int] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=CLAIMERS)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=30, limits=limits
    ) as client:

        async def claim_until_empty(worker_id: int) -> None:
            while True:
                response = await client.post(
                    "/api/v1/tasks/claim", json={"worker_id": worker_id, "lease_seconds": 600}
                )
                statuses[response.status_code] += 1
                if response.status_code == 204:
                    return
                assert response.status_code == 200, response.text
                claimed.append(response.json()["id"])

        await asyncio.gather(
            *(claim_until_empty(claimers[n % len(claimers)]) for n in range(CLAIMERS))
        )
    assert set(statuses) <= {200, 204}, statuses
    return claimed
