"""The benchmark's comparison apps answer the four calls exactly like taskyard.

Three fresh PostgreSQL databases get taskyard's migrations, one user and key, and the
benchmark's seed data (identical, ids included). Each app then serves the same sequence of
calls (get one, list 20, create, patch status) through httpx; the bodies must be equal to
taskyard's, apart from the values that cannot be: timestamps (only their format is compared)
and the signed cursor (each app signs with its own key).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette

from bench import databases
from bench.apps import raw, tutorial
from sessionwise import Database
from taskyard.app import create_app
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService

pytestmark = pytest.mark.postgres

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
APPS = ("taskyard", "raw", "tutorial")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def app_databases(postgres_server: str) -> AsyncIterator[dict[str, str]]:
    """One fresh database per app, dropped afterwards."""
    names = {app: f"sw_bench_{app}_{uuid.uuid4().hex[:8]}" for app in APPS}
    admin = await asyncpg.connect(_dsn(postgres_server))
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {
            app: make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
            for app, name in names.items()
        }
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _seed(url: str) -> databases.Seeded:
    """What the benchmark does with ``taskyard migrate`` and ``taskyard users create``."""
    async with Database(url) as db:
        await upgrade(db)
        async with db.session() as session:
            data = UserCreate(email=databases.OWNER_EMAIL, name="Bench Owner")
            _, issued = await UserService(session).create_user(data)
    return await databases.seed(url, issued.api_key, claim_stock=0)


@asynccontextmanager
async def _client(app: FastAPI | Starlette, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            yield client


def _taskyard(url: str, api_key: str) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return _client(create_app(Settings(database_url=url)), api_key)


@asynccontextmanager
async def _raw(
    url: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(raw, "DATABASE_URL", _dsn(url))  # the lifespan reads it when it runs
    async with _client(raw.app, api_key) as client:
        yield client


@asynccontextmanager
async def _tutorial(
    url: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    # The tutorial builds its engine at import time (that is the pattern); its `get_db`
    # looks the session factory up when called, so the test points that at its database.
    engine = create_async_engine(url, pool_pre_ping=True, pool_size=5)
    factory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    monkeypatch.setattr(tutorial, "async_session_factory", factory)
    try:
        async with _client(tutorial.app, api_key) as client:
            yield client
    finally:
        await engine.dispose()


async def _four_calls(client: httpx.AsyncClient, seeded: databases.Seeded) -> dict[str, Any]:
    first, second = seeded.task_ids[0], seeded.task_ids[1]
    responses = {
        "get": await client.get(f"/api/v1/tasks/{first}"),
        "list": await client.get(
            "/api/v1/tasks", params={"project_id": seeded.project_id, "limit": 20}
        ),
        "create": await client.post(
            "/api/v1/tasks",
            json={
                "project_id": seeded.project_id,
                "title": "written by the test",
                "description": "same on every app",
                "priority": 3,
                "assignee_id": seeded.worker_ids[1],
            },
        ),
        "patch": await client.patch(f"/api/v1/tasks/{second}", json={"status": "done"}),
    }
    return {
        call: (response.status_code, response.headers.get("content-type"), response.json())
        for call, response in responses.items()
    }


def _comparable(value: Any) -> Any:
    """The body with timestamps reduced to their format and cursors to their presence."""
    if isinstance(value, dict):
        return {
            key: (
                "<cursor>" if key == "next_cursor" and isinstance(item, str) else _comparable(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        return "<UTC timestamp>"
    return value


async def test_raw_and_tutorial_answer_like_taskyard(
    app_databases: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    starters: dict[str, Callable[[str, str], AbstractAsyncContextManager[httpx.AsyncClient]]] = {
        "taskyard": _taskyard,
        "raw": lambda url, key: _raw(url, key, monkeypatch),
        "tutorial": lambda url, key: _tutorial(url, key, monkeypatch),
    }
    answers = {}
    seeds = {}
    for app, url in app_databases.items():
        seeds[app] = seeded = await _seed(url)
        async with starters[app](url, seeded.api_key) as client:
            answers[app] = await _four_calls(client, seeded)

    expected = answers["taskyard"]
    assert {call: status for call, (status, _, _) in expected.items()} == {
        "get": 200,
        "list": 200,
        "create": 201,
        "patch": 200,
    }
    page = expected["list"][2]
    assert len(page["items"]) == 20
    assert page["next_cursor"] is not None
    # Both shapes of the embedded assignee are compared: a worker, and null.
    assert {item["assignee"] is None for item in page["items"]} == {True, False}
    assert expected["create"][2]["assignee"] == {
        "id": seeds["taskyard"].worker_ids[1],
        "name": "worker 2",
    }
    assert expected["patch"][2]["status"] == "done"
    assert expected["patch"][2]["version"] == 2
    for app in ("raw", "tutorial"):
        for call, (status, content_type, body) in answers[app].items():
            want_status, want_type, want_body = expected[call]
            assert (status, content_type) == (want_status, want_type), (app, call)
            assert _comparable(body) == _comparable(want_body), (app, call)
