"""Waiting claims against ``taskyard serve`` processes on PostgreSQL: real sockets, real
processes, the real LISTEN connection.

A claim whose ``wait_seconds`` run out without a wake-up answers 204 without looking again,
so a 200 carrying a task created after the wait began shows that a wake-up reached it.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.pg_activity import BUSY_STATES, backend_states
from tests.support.served_app import ServedApp, serve_taskyard
from tests.support.taskyard_api import create_project, create_task, create_worker
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
CLAIM = "/api/v1/tasks/claim"


@pytest.fixture
def application_name() -> str:
    return f"tywait_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def served(postgres_url: str, tmp_path: Path, application_name: str) -> Iterator[ServedApp]:
    env = {"TASKYARD_DATABASE__APPLICATION_NAME": application_name}
    with serve_taskyard(postgres_url, tmp_path, env=env) as app:
        yield app


async def _waiting_claims(client: httpx.AsyncClient) -> int:
    response = await client.get("/health/ready")
    count: int = response.json()["waiting_claims"]
    return count


async def _in_line(
    client: httpx.AsyncClient, claim: asyncio.Future[httpx.Response], count: int
) -> None:
    """Until *count* claims wait in line (the last one being *claim*, still unanswered)."""

    async def waiting() -> bool:
        if claim.done():
            raise AssertionError(f"the claim answered instead of waiting: {claim.result()}")
        return await _count_is(client, count)

    await wait_until(waiting, within=15)


async def _count_is(client: httpx.AsyncClient, count: int) -> bool:
    return await _waiting_claims(client) == count


async def _listening(admin: asyncpg.Connection, application_name: str) -> bool:
    # Its last statement: the LISTEN, or since then the ping every 15 s.
    rows = await admin.fetch(
        "SELECT query FROM pg_stat_activity WHERE application_name = $1",
        f"{application_name}-listener",
    )
    return any(row["query"].startswith(("LISTEN", "SELECT 1")) for row in rows)


async def test_a_task_created_by_another_process_wakes_the_waiter(
    served: ServedApp, tmp_path: Path, pg_admin: asyncpg.Connection, application_name: str
) -> None:
    with serve_taskyard(served.database_url, tmp_path, users=[served.user]) as other:
        async with served.client(timeout=30) as here, other.client(timeout=30) as there:
            project = await create_project(here)
            worker = await create_worker(here, project)
            # Cross-process wake-ups come from the listener alone (no re-checks while it is
            # connected): make sure this server listens.
            await wait_until(lambda: _listening(pg_admin, application_name), within=10)
            wait = 10
            started = time.monotonic()
            claim = asyncio.ensure_future(
                here.post(CLAIM, json={"worker_id": worker, "wait_seconds": wait})
            )
            await _in_line(here, claim, 1)
            task = await create_task(there, project)  # committed by the other process
            response = await claim
            answered = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["id"] == task["id"]
    assert response.json()["assignee"]["id"] == worker
    assert answered < wait  # woken, not the end of the wait


async def test_200_waiting_claims_hold_no_connection_and_stop_at_sigterm(
    served: ServedApp, pg_admin: asyncpg.Connection, application_name: str
) -> None:
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    async with served.client(timeout=60, limits=limits) as client:
        project = await create_project(client)
        workers = [await create_worker(client, project) for _ in range(20)]
        claims = [
            asyncio.ensure_future(
                client.post(CLAIM, json={"worker_id": workers[n % 20], "wait_seconds": 30})
            )
            for n in range(200)
        ]
        await wait_until(lambda: _count_is(client, 200), within=60)
        ready = (await client.get("/health/ready")).json()
        assert ready["pool"]["checked_out"] == 0
        assert ready["pool"]["waiting"] == 0
        states = await backend_states(pg_admin, application_name)
        assert not {state for state, count in states.items() if count} & BUSY_STATES
        # The pool is free for everything else (10 connections, 200 claims waiting).
        others = await asyncio.gather(
            *(client.get("/api/v1/tasks", params={"project_id": project}) for _ in range(20)),
            *(client.post("/api/v1/projects", json={"name": f"p{n}"}) for n in range(5)),
        )
        assert [response.status_code for response in others] == [200] * 20 + [201] * 5
        assert await _waiting_claims(client) == 200
        # SIGTERM: every waiting claim answers at once, and the server exits by itself.
        code, _seconds = served.terminate(grace=25)
        answers = await asyncio.gather(*claims)
    # Exited by itself (uvicorn re-raises the SIGTERM it captured once it is done).
    assert code in (0, -signal.SIGTERM)
    assert {response.status_code for response in answers} == {503}
    assert {response.headers["retry-after"] for response in answers} == {"1"}


async def test_a_client_that_disconnects_leaves_the_line(served: ServedApp) -> None:
    async with served.client(timeout=30) as client:
        project = await create_project(client)
        worker = await create_worker(client, project)
        body = {"worker_id": worker, "wait_seconds": 30}
        async with served.client(timeout=1) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(CLAIM, json=body)  # gives up, closes its socket
        await wait_until(lambda: _count_is(client, 0), within=10)
        assert (await client.get("/health/ready")).json()["pool"]["checked_out"] == 0
        # Had it stayed first in line, it would take the next task for nobody.
        claim = asyncio.ensure_future(client.post(CLAIM, json=body))
        await _in_line(client, claim, 1)
        task = await create_task(client, project)
        response = await claim
    assert response.status_code == 200
    assert response.json()["id"] == task["id"]
