"""Batch claims under real concurrency: 16 claimers taking up to 10 tasks per request over
2,000 tasks, each task claimed exactly once, on both backends (separate sessions and
transactions through the app), and on PostgreSQL through a served app over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from sessionwise import Database
from taskyard.tasks.models import Task, TaskStatus
from tests.support.direct_sql import pg_execute, pg_fetch
from tests.support.served_app import serve_taskyard
from tests.support.taskyard_api import create_project, create_worker
from tests.taskyard.conftest import Actor, create_actor, running_app

API = "/api/v1"
CLAIMERS = 16
TASKS = 2_000
BATCH = 10
MARKER = "payload-marker-7f3a9c"


async def _claim_batches_until_empty(
    client: httpx.AsyncClient, worker_id: int, headers: dict[str, str] | None = None
) -> list[int]:
    claimed: list[int] = []
    busy = 0
    while True:
        response = await client.post(
            f"{API}/tasks/claim",
            json={"worker_id": worker_id, "lease_seconds": 300, "limit": BATCH},
            headers=headers,
        )
        if response.status_code == 503 and busy < 20:
            # SQLite's lock wait can run out for one of 16 writers on a loaded machine: busy,
            # nothing done (a 503 that had claimed anyway would show as a missing task below).
            assert "retry-after" in response.headers
            busy += 1
            await asyncio.sleep(0.05)
            continue
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if not items:
            return claimed
        assert len(items) <= BATCH
        assert {task["assignee"]["id"] for task in items} == {worker_id}
        assert {task["status"] for task in items} == {"in_progress"}
        claimed += [task["id"] for task in items]


def _check_exactly_once(results: list[list[int]], all_ids: set[int]) -> None:
    claims = Counter(task_id for claimed in results for task_id in claimed)
    assert set(claims) == all_ids
    assert set(claims.values()) == {1}, "a task was claimed twice"
    assert sum(1 for claimed in results if claimed) > 1  # the claimers really interleaved


async def test_concurrent_batch_claimers_take_every_task_exactly_once(database_url: str) -> None:
    async with running_app(database_url, pool_size=CLAIMERS, max_overflow=4) as (client, db):
        owner = await create_actor(db, "owner")
        project_id, workers = await _project_with_workers(client, owner)
        await _add_tasks(db, project_id)
        async with db.read_session() as session:
            all_ids = set(await session.exec(select(Task.id)))
        results = await asyncio.gather(
            *(_claim_batches_until_empty(client, w, owner.headers) for w in workers)
        )
        _check_exactly_once(results, all_ids)
        owners = {
            task_id: w for w, claimed in zip(workers, results, strict=True) for task_id in claimed
        }
        async with db.read_session() as session:
            rows = list(
                await session.exec(
                    select(Task.id, Task.assignee_id, Task.status, Task.version, Task.attempts)
                )
            )
        assert {row[0]: row[1] for row in rows} == owners
        assert {(row[2], row[3], row[4]) for row in rows} == {(TaskStatus.IN_PROGRESS, 2, 1)}


@pytest.mark.postgres
async def test_batch_claims_over_http_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    database_url = postgres_url
    # One claim per request would be 2,000 requests; a batch of 10, about 200 plus the empties.
    env = {"TASKYARD_DATABASE__POOL_SIZE": str(CLAIMERS)}
    with serve_taskyard(database_url, tmp_path, env=env) as app:
        limits = httpx.Limits(max_connections=CLAIMERS)
        async with app.client(timeout=30, limits=limits) as client:
            project_id = await create_project(client)
            workers = [await create_worker(client, project_id) for _ in range(CLAIMERS)]
            await pg_execute(
                database_url,
                "INSERT INTO tasks (project_id, title, description, status, priority, version, "
                "created_at, updated_at, run_after, attempts, max_attempts) "
                "SELECT $1, 't' || n, '', 'pending', n % 7, 1, now(), now(), now(), 0, 3 "
                "FROM generate_series(1, $2) AS n",
                project_id,
                TASKS,
            )
            results = await asyncio.gather(
                *(_claim_batches_until_empty(client, w) for w in workers)
            )
            await _payloads_results_and_errors_with(client, project_id, workers[0], MARKER)
        assert MARKER not in app.log(), "a payload, result or error reached the server log"
        rows = await pg_fetch(
            database_url,
            "SELECT id, assignee_id, status FROM tasks WHERE project_id = $1 AND payload IS NULL",
            project_id,
        )
    _check_exactly_once(results, {row[0] for row in rows})
    owners = {
        task_id: w for w, claimed in zip(workers, results, strict=True) for task_id in claimed
    }
    assert {row[0]: row[1] for row in rows} == owners
    assert {row[2] for row in rows} == {"in_progress"}


async def _payloads_results_and_errors_with(
    client: httpx.AsyncClient, project_id: int, worker_id: int, marker: str
) -> None:
    """One task completed and one failed, each carrying *marker* in what they store."""
    for title in ("keep", "drop"):
        created = await client.post(
            f"{API}/tasks",
            json={"project_id": project_id, "title": title, "payload": {"secret": marker}},
        )
        assert created.status_code == 201, created.text
    claim = {"worker_id": worker_id, "limit": 2}
    kept, dropped = (await client.post(f"{API}/tasks/claim", json=claim)).json()["items"]
    assert kept["payload"] == {"secret": marker}
    done = await client.post(
        f"{API}/tasks/{kept['id']}/complete", json={"worker_id": worker_id, "result": [marker]}
    )
    assert done.status_code == 200, done.text
    failed = await client.post(
        f"{API}/tasks/{dropped['id']}/fail", json={"worker_id": worker_id, "error": marker}
    )
    assert failed.json()["last_error"] == marker


async def _project_with_workers(client: httpx.AsyncClient, owner: Actor) -> tuple[int, list[int]]:
    project = await client.post(f"{API}/projects", json={"name": "queue"}, headers=owner.headers)
    project_id: int = project.json()["id"]
    workers = []
    for n in range(CLAIMERS):
        response = await client.post(
            f"{API}/workers",
            json={"project_id": project_id, "name": f"w{n}"},
            headers=owner.headers,
        )
        workers.append(response.json()["id"])
    return project_id, workers


async def _add_tasks(db: Database, project_id: int) -> None:
    async with db.session() as session:
        session.add_all(
            Task(project_id=project_id, title=f"t{n}", priority=n % 7) for n in range(TASKS)
        )
