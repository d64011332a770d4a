"""The benchmark's comparison apps answer the four calls exactly like taskyard.

Three fresh PostgreSQL databases get taskyard's migrations, one user and key, and the
benchmark's seed data (identical, ids included). Each app then serves the same sequence of
calls (get one, list 20, create, patch status) through httpx; the bodies must be equal to
taskyard's, apart from the values that cannot be: timestamps (only their format is compared)
and the signed cursor (each app signs with its own key).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette

from bench.apps import raw, tutorial
from taskyard.app import create_app
from taskyard.settings import Settings
from tests.bench.contract import comparable, four_calls, seed_like_the_benchmark

pytestmark = pytest.mark.postgres

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
        seeds[app] = seeded = await seed_like_the_benchmark(url)
        async with starters[app](url, seeded.api_key) as client:
            answers[app] = await four_calls(client, seeded)

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
            assert comparable(body) == comparable(want_body), (app, call)
