"""Claims under real concurrency: separate sessions and transactions, not the isolated one."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
from sqlalchemy import func, update
from sqlmodel import col, select

from sessionwise import Database
from taskyard.tasks.models import Task, TaskStatus
from taskyard.timestamps import utc_now
from tests.taskyard.conftest import Actor, create_actor, running_app

API = "/api/v1"
CLAIMERS = 16
TASKS = 500


async def _setup(
    client: httpx.AsyncClient, db: Database, tasks: int
) -> tuple[Actor, int, list[int]]:
    owner = await create_actor(db, "owner")
    project_id = (
        await client.post(f"{API}/projects", json={"name": "queue"}, headers=owner.headers)
    ).json()["id"]
    worker_ids = []
    for n in range(CLAIMERS):
        response = await client.post(
            f"{API}/workers",
            json={"project_id": project_id, "name": f"w{n}"},
            headers=owner.headers,
        )
        worker_ids.append(response.json()["id"])
    async with db.session() as session:
        session.add_all(
            Task(project_id=project_id, title=f"t{n}", priority=n % 7) for n in range(tasks)
        )
    return owner, project_id, worker_ids


async def _claim_until_empty(
    client: httpx.AsyncClient, owner: Actor, worker_id: int, lease_seconds: int = 300
) -> list[int]:
    claimed = []
    busy = 0
    while True:
        response = await client.post(
            f"{API}/tasks/claim",
            json={"worker_id": worker_id, "lease_seconds": lease_seconds},
            headers=owner.headers,
        )
        if response.status_code == 503 and busy < 20:
            # "Busy, nothing done, retry": SQLite's lock wait can run out for one of 16
            # writers on a loaded machine. The exactly-once check below would catch a 503 that
            # had committed a claim anyway (that task would be missing from every list).
            assert "retry-after" in response.headers
            busy += 1
            await asyncio.sleep(0.05)
            continue
        if response.status_code == 204:
            assert response.content == b""
            return claimed
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["assignee"]["id"] == worker_id
        assert body["status"] == "in_progress"
        claimed.append(body["id"])


async def test_concurrent_claimers_take_every_task_exactly_once(database_url: str) -> None:
    async with running_app(database_url, pool_size=CLAIMERS, max_overflow=4) as (client, db):
        owner, _project_id, workers = await _setup(client, db, TASKS)
        results = await asyncio.gather(*(_claim_until_empty(client, owner, w) for w in workers))

        claims = Counter(task_id for claimed in results for task_id in claimed)
        assert len(claims) == TASKS
        assert set(claims.values()) == {1}
        assert sum(1 for claimed in results if claimed) > 1  # the claimers really interleaved
        async with db.read_session() as session:
            rows = list(await session.exec(select(Task.assignee_id, Task.status, Task.version)))
        assert len(rows) == TASKS
        assert all(status == TaskStatus.IN_PROGRESS and version == 2 for _, status, version in rows)
        # Each task's assignee is the worker whose claim returned it.
        owners = {
            task_id: w for w, claimed in zip(workers, results, strict=True) for task_id in claimed
        }
        async with db.read_session() as session:
            stored = dict(list(await session.exec(select(Task.id, Task.assignee_id))))
        assert stored == owners


async def test_claims_follow_priority_then_age(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner, project_id, workers = await _setup(client, db, 0)
        titles = [("low", -5), ("high-old", 9), ("mid", 0), ("high-new", 9)]
        for title, priority in titles:
            await client.post(
                f"{API}/tasks",
                json={"project_id": project_id, "title": title, "priority": priority},
                headers=owner.headers,
            )
        order = []
        for _ in titles:
            response = await client.post(
                f"{API}/tasks/claim",
                json={"worker_id": workers[0], "lease_seconds": 60},
                headers=owner.headers,
            )
            order.append(response.json()["title"])
        assert order == ["high-old", "high-new", "mid", "low"]
        nothing = await client.post(
            f"{API}/tasks/claim",
            json={"worker_id": workers[0], "lease_seconds": 60},
            headers=owner.headers,
        )
        assert nothing.status_code == 204


async def test_expired_leases_are_reclaimed_and_live_ones_are_not(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner, _project_id, workers = await _setup(client, db, 3)
        first, second = workers[0], workers[1]
        held = await _claim_until_empty(client, owner, first, lease_seconds=600)
        assert len(held) == 3
        assert await _claim_until_empty(client, owner, second) == []  # all leases live

        # Two leases run out (moved into the past rather than waited for).
        expired = held[:2]
        async with db.session() as session:
            await session.exec(
                update(Task)
                .where(col(Task.id).in_(expired))
                .values(lease_expires_at=utc_now() - timedelta(seconds=1))
            )
        retaken = await _claim_until_empty(client, owner, second)
        assert sorted(retaken) == sorted(expired)

        # The first worker lost those leases: its heartbeat is refused, the live one works.
        lost = await client.post(
            f"{API}/tasks/{expired[0]}/heartbeat",
            json={"worker_id": first, "lease_seconds": 60},
            headers=owner.headers,
        )
        assert lost.status_code == 409
        assert lost.json()["type"] == "/problems/conflict"
        kept = await client.post(
            f"{API}/tasks/{held[2]}/heartbeat",
            json={"worker_id": first, "lease_seconds": 60},
            headers=owner.headers,
        )
        assert kept.status_code == 200
        async with db.read_session() as session:
            assignees = dict(list(await session.exec(select(Task.id, Task.assignee_id))))
        assert assignees == {expired[0]: second, expired[1]: second, held[2]: first}


async def test_claim_checks_worker_and_project(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner, project_id, workers = await _setup(client, db, 1)
        other = (
            await client.post(f"{API}/projects", json={"name": "other"}, headers=owner.headers)
        ).json()
        wrong = await client.post(
            f"{API}/tasks/claim",
            json={"worker_id": workers[0], "project_id": other["id"], "lease_seconds": 60},
            headers=owner.headers,
        )
        assert wrong.status_code == 404
        assert wrong.json()["errors"][0]["field"] == "project_id"
        right = await client.post(
            f"{API}/tasks/claim",
            json={"worker_id": workers[0], "project_id": project_id, "lease_seconds": 60},
            headers=owner.headers,
        )
        assert right.status_code == 200
        # A finished task is not claimable, and its lease is gone.
        done = await client.patch(
            f"{API}/tasks/{right.json()['id']}", json={"status": "done"}, headers=owner.headers
        )
        assert done.json()["lease_expires_at"] is None
        async with db.read_session() as session:
            pending = await session.scalar(
                select(func.count()).select_from(Task).where(Task.status == TaskStatus.PENDING)
            )
        assert pending == 0
        again = await client.post(
            f"{API}/tasks/claim",
            json={"worker_id": workers[0], "lease_seconds": 60},
            headers=owner.headers,
        )
        assert again.status_code == 204


async def test_pending_and_expired_tasks_are_claimed_in_one_priority_order(
    database_url: str,
) -> None:
    # Claimable is "pending, or in progress with an expired lease", best first by priority,
    # then age, whichever kind a task is: a crashed worker's task is not starved by newer
    # pending work, nor does it jump ahead of more urgent work.
    async with running_app(database_url) as (client, db):
        owner, project_id, workers = await _setup(client, db, 0)
        async with db.session() as session:
            session.add_all(
                Task(project_id=project_id, title=title, priority=priority)
                for title, priority in (("p9", 9), ("e5", 5), ("p3", 3), ("e1", 1))
            )
        async with db.read_session() as session:
            ids = dict(list(await session.exec(select(Task.title, Task.id))))
        # e5 and e1 were claimed by a worker whose leases then ran out.
        async with db.session() as session:
            await session.exec(
                update(Task)
                .where(col(Task.id).in_([ids["e5"], ids["e1"]]))
                .values(
                    status=TaskStatus.IN_PROGRESS,
                    assignee_id=workers[0],
                    lease_expires_at=utc_now() - timedelta(seconds=1),
                )
            )
        claimed = await _claim_until_empty(client, owner, workers[1])
        assert claimed == [ids["p9"], ids["e5"], ids["p3"], ids["e1"]]
