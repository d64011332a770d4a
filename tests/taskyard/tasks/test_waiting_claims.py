"""Claims with ``wait_seconds``, through the app with its real lifespan, on both backends.

Real sessions and transactions (not the isolated test transaction): a waiting claim runs
short sessions of its own while other requests create the tasks it waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from sessionwise import Database, DatabaseConfig
from taskyard.app import create_app
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from taskyard.tasks.wakeups import WakeupHub
from taskyard.timestamps import utc_now
from tests.support.pg_activity import terminate_backends
from tests.support.waiting import wait_until
from tests.taskyard.conftest import Actor, create_actor

pytestmark = pytest.mark.anyio
API = "/api/v1"


@dataclass
class Served:
    client: httpx.AsyncClient
    app: FastAPI
    db: Database
    owner: Actor
    project_id: int

    @property
    def wakeups(self) -> WakeupHub:
        hub = self.app.state.wakeups
        assert isinstance(hub, WakeupHub)
        return hub

    async def worker(self, name: str) -> int:
        response = await self.client.post(
            f"{API}/workers", json={"project_id": self.project_id, "name": name}
        )
        assert response.status_code == 201, response.text
        worker_id: int = response.json()["id"]
        return worker_id

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"project_id": self.project_id, "title": "t", **fields}
        response = await self.client.post(f"{API}/tasks", json=body)
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    def claim(self, worker_id: int, **fields: Any) -> asyncio.Task[httpx.Response]:
        body = {"worker_id": worker_id, **fields}
        return asyncio.ensure_future(self.client.post(f"{API}/tasks/claim", json=body))

    async def waiting(self, count: int) -> None:
        await wait_until(lambda: self.wakeups.waiting(self.project_id) == count, within=10)


@asynccontextmanager
async def served(
    url: str, application_name: str = "taskyard-test", **settings: Any
) -> AsyncIterator[Served]:
    config = DatabaseConfig(application_name=application_name)
    app = create_app(Settings(database_url=url, database=config, **settings))
    async with app.router.lifespan_context(app):
        db = app.state.sessionwise_database
        assert isinstance(db, Database)
        await upgrade(db)
        owner = await create_actor(db, "owner")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://taskyard", headers=owner.headers
        ) as client:
            response = await client.post(f"{API}/projects", json={"name": "queue"})
            assert response.status_code == 201, response.text
            yield Served(client, app, db, owner, response.json()["id"])


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Served]:
    async with served(database_url) as made:
        yield made


@pytest.mark.parametrize("wait", [-1, 31, 1.5, "5", None])
async def test_wait_seconds_outside_0_to_30_is_a_422(app: Served, wait: object) -> None:
    worker = await app.worker("w")
    response = await app.claim(worker, wait_seconds=wait)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "wait_seconds" in response.text


async def test_nothing_within_wait_seconds_is_a_204_or_no_items(app: Served) -> None:
    worker = await app.worker("w")
    single, batch = await asyncio.gather(
        app.claim(worker, wait_seconds=1), app.claim(worker, wait_seconds=1, limit=5)
    )
    assert single.status_code == 204
    assert batch.status_code == 200
    assert batch.json() == {"items": []}
    assert len(app.wakeups) == 0


async def test_a_task_created_while_waiting_is_claimed_by_the_waiter(app: Served) -> None:
    worker = await app.worker("w")
    claim = app.claim(worker, wait_seconds=30)
    await app.waiting(1)
    task = await app.create()
    response = await claim
    assert response.status_code == 200
    assert response.json()["id"] == task["id"]
    assert response.json()["status"] == "in_progress"
    assert response.headers["etag"] == f'"{response.json()["version"]}"'


async def test_a_batch_claim_waits_too(app: Served) -> None:
    worker = await app.worker("w")
    claim = app.claim(worker, wait_seconds=30, limit=10)
    await app.waiting(1)
    task = await app.create()
    response = await claim
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [task["id"]]


async def test_the_longest_waiter_gets_the_first_task(app: Served) -> None:
    workers = [await app.worker(f"w{n}") for n in range(3)]
    claims = []
    for n, worker in enumerate(workers, start=1):
        claims.append(app.claim(worker, wait_seconds=30))
        await app.waiting(n)  # in this order
    for claim in claims:
        task = await app.create()
        response = await claim
        assert response.status_code == 200
        assert response.json()["id"] == task["id"]
        assert response.json()["assignee"]["id"] == workers[claims.index(claim)]


async def test_a_task_due_later_wakes_the_waiter_when_due(app: Served) -> None:
    worker = await app.worker("w")
    task = await app.create(run_after=(utc_now() + timedelta(seconds=1)).isoformat())
    # The first attempt finds nothing due and learns when the task will be.
    response = await app.claim(worker, wait_seconds=30)
    assert response.status_code == 200
    assert response.json()["id"] == task["id"]


async def test_an_expired_lease_is_taken_over_by_a_waiter(database_url: str) -> None:
    async with served(database_url, retry_base_delay=0.5) as app:
        crashed, waiting = await app.worker("crashed"), await app.worker("waiting")
        task = await app.create()
        first = await app.claim(crashed, lease_seconds=1)
        assert first.json()["id"] == task["id"]
        # Waits through the lease (learned at its first attempt) and the retry's backoff.
        response = await app.claim(waiting, wait_seconds=30)
        assert response.status_code == 200
        assert response.json()["id"] == task["id"]
        assert response.json()["assignee"]["id"] == waiting
        assert response.json()["attempts"] == 2


async def test_a_failed_task_requeued_wakes_a_waiter(database_url: str) -> None:
    async with served(database_url, retry_base_delay=0.5) as app:
        first_worker, waiting = await app.worker("first"), await app.worker("waiting")
        task = await app.create()
        assert (await app.claim(first_worker)).status_code == 200
        claim = app.claim(waiting, wait_seconds=30)
        await app.waiting(1)
        failed = await app.client.post(
            f"{API}/tasks/{task['id']}/fail", json={"worker_id": first_worker, "error": "boom"}
        )
        assert failed.status_code == 200, failed.text
        response = await claim
        assert response.status_code == 200
        assert response.json()["id"] == task["id"]
        assert response.json()["assignee"]["id"] == waiting


async def test_a_cancelled_waiting_claim_leaves_no_waiter_and_no_connection(app: Served) -> None:
    worker = await app.worker("w")
    claim = app.claim(worker, wait_seconds=30)
    await app.waiting(1)
    assert app.db.pool_status().checked_out == 0
    claim.cancel()  # with ASGITransport, the client's cancellation reaches the endpoint
    with pytest.raises(asyncio.CancelledError):
        await claim
    assert len(app.wakeups) == 0
    assert app.db.pool_status().checked_out == 0
    # The next waiter is first in line: the task goes to it.
    claim = app.claim(worker, wait_seconds=30)
    await app.waiting(1)
    task = await app.create()
    assert (await claim).json()["id"] == task["id"]


async def test_a_waiting_claim_with_an_idempotency_key_replays_its_task(app: Served) -> None:
    worker = await app.worker("w")
    headers = {"Idempotency-Key": '"claim-1"'}
    body = {"worker_id": worker, "wait_seconds": 30}
    claim = asyncio.ensure_future(app.client.post(f"{API}/tasks/claim", json=body, headers=headers))
    await app.waiting(1)
    task = await app.create()
    first = await claim
    assert first.status_code == 200
    assert first.json()["id"] == task["id"]
    await app.create()  # a second task must not be claimed by the retry
    again = await app.client.post(f"{API}/tasks/claim", json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json()["id"] == task["id"]


async def test_shutdown_answers_waiting_claims_503(database_url: str) -> None:
    async with served(database_url) as app:
        worker = await app.worker("w")
        claims = [app.claim(worker, wait_seconds=30) for _ in range(3)]
        await app.waiting(3)
        await app.wakeups.close()  # what the lifespan's exit (and SIGTERM) does
        for claim in claims:
            response = await claim
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "shutting down" in response.json()["detail"]


async def test_the_listener_reconnects_when_its_connection_is_killed(
    postgres_url: str, pg_admin: asyncpg.Connection, application_name: str
) -> None:
    async with served(postgres_url, application_name) as app:
        listener = f"{application_name}-listener"

        async def listener_pids() -> set[int]:
            rows = await pg_admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1", listener
            )
            return {row["pid"] for row in rows}

        await wait_until(lambda: app.wakeups.listening, within=10)
        killed = await listener_pids()
        assert len(killed) == 1  # one listening connection, outside the pool
        assert await terminate_backends(pg_admin, listener) == 1

        async def listening_again() -> bool:
            pids = await listener_pids()
            return app.wakeups.listening and len(pids) == 1 and not pids & killed

        await wait_until(listening_again, within=15)
        # While connected the listener is the only way a wake-up arrives on PostgreSQL.
        worker = await app.worker("w")
        claim = app.claim(worker, wait_seconds=30)
        await app.waiting(1)
        task = await app.create()
        response = await claim
        assert response.status_code == 200
        assert response.json()["id"] == task["id"]
