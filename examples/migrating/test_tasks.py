"""The app's tests on sessionwise's pytest plugin: no dependency overrides, nothing left behind.

Needs ``sessionwise[testing]`` and anyio's pytest plugin in auto mode (``anyio_mode = "auto"``
in the pytest configuration). Run: ``uv run pytest examples/migrating/test_tasks.py``
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from examples.migrating.app import app
from examples.migrating.models import Base, Task
from sessionwise import Database, Session


@pytest.fixture
async def sessionwise_database(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}") as test_db:
        async with test_db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield test_db


@pytest.fixture
def sessionwise_app() -> FastAPI:
    return app


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
