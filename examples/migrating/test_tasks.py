"""The app's tests on sessionwise's pytest plugin: no dependency overrides, nothing left behind.

Needs ``sessionwise[testing]`` and anyio's pytest plugin in auto mode (``anyio_mode = "auto"``
in the pytest configuration). Requests, and the jobs that import the app's `db`, run in each
test's transaction, rolled back at teardown. Run: ``uv run pytest examples/migrating``
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from examples.migrating.app import app
from examples.migrating.database import db
from examples.migrating.jobs import add_worker, assign_open_tasks
from examples.migrating.models import Base, Task
from sessionwise import Database, Session


@pytest.fixture
async def sessionwise_database() -> AsyncIterator[Database]:
    async with db:  # the app's own Database: started for this test, closed after it
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield db


@pytest.fixture
def sessionwise_app() -> FastAPI:
    return app


@pytest.fixture
def sessionwise_run_lifespan() -> bool:
    # The app's lifespan only creates the tables (on a connection of its own, which would wait
    # for the test's write lock on SQLite); sessionwise_database did that already.
    return False


async def test_create_then_read(api_client: httpx.AsyncClient) -> None:
    created = await api_client.post("/tasks", json={"title": "Write the copy"})
    assert created.status_code == 201
    read = await api_client.get(f"/tasks/{created.json()['id']}")
    assert read.json()["title"] == "Write the copy"


async def test_a_refused_request_stores_nothing(
    api_client: httpx.AsyncClient, db_session: Session
) -> None:
    response = await api_client.post("/tasks", json={"title": "x" * 51})
    assert response.status_code == 422
    assert await db_session.scalar(select(func.count()).select_from(Task)) == 0


async def test_a_job_runs_in_the_test_transaction(api_client: httpx.AsyncClient) -> None:
    created = await api_client.post("/tasks", json={"title": "Fix the header"})
    worker_id = await add_worker("build-agent")  # the job imports the same `db`: isolated too
    assert await assign_open_tasks(worker_id) == 1
    task = (await api_client.get(f"/tasks/{created.json()['id']}")).json()
    assert task["assignee"] == {"id": worker_id, "name": "build-agent"}
