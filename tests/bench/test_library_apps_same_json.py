"""The library section's apps (issue 15) answer the four calls exactly like taskyard.

One fresh database gets taskyard's migrations, a user and key, and the benchmark's seed;
every app gets its own copy of it (``CREATE DATABASE ... TEMPLATE``: identical data, ids
included). taskyard answers in-process (with its key); the five library apps are served by
uvicorn as the benchmark serves them, fastapi-sqla and advanced-alchemy on the interpreter of
``bench/.peers-venv``, which this test builds if it is missing or stale (`bench.peers`:
pinned versions from PyPI). Their bodies must be equal to taskyard's, apart from timestamps
(their format is compared) and the signed cursor (its presence).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from bench import apps_under_test, databases, peers
from bench.servers import serve_many
from taskyard.app import create_app
from taskyard.settings import Settings
from tests.bench.contract import comparable, four_calls, seed_like_the_benchmark

pytestmark = pytest.mark.postgres


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Copies:
    urls: dict[str, str]  # app -> its copy of the seeded database
    seeded: databases.Seeded


@pytest.fixture
async def seeded_copies(postgres_server: str) -> AsyncIterator[Copies]:
    """A seeded database and one copy of it per app; all dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    template = f"sw_test_lib_seed_{suffix}"
    apps = ("taskyard", *apps_under_test.LIBRARY_APPS)
    names = {app: f"sw_test_lib_{app.replace('-', '_')}_{suffix}" for app in apps}
    admin = await asyncpg.connect(_dsn(postgres_server))

    def url_of(name: str) -> str:
        return make_url(postgres_server).set(database=name).render_as_string(hide_password=False)

    try:
        await admin.execute(f'CREATE DATABASE "{template}"')
        seeded = await seed_like_the_benchmark(url_of(template))
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield Copies({app: url_of(name) for app, name in names.items()}, seeded)
    finally:
        for name in [template, *names.values()]:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_library_apps_answer_like_taskyard(seeded_copies: Copies, tmp_path: Path) -> None:
    seeded = seeded_copies.seeded
    headers = {"Authorization": f"Bearer {seeded.api_key}"}
    taskyard = create_app(Settings(database_url=seeded_copies.urls["taskyard"]))
    async with taskyard.router.lifespan_context(taskyard):
        transport = httpx.ASGITransport(app=taskyard)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            expected = await four_calls(client, seeded)
    assert {call: status for call, (status, _, _) in expected.items()} == {
        "get": 200,
        "list": 200,
        "create": 201,
        "patch": 200,
    }
    assert len(expected["list"][2]["items"]) == 20
    assert {item["assignee"] is None for item in expected["list"][2]["items"]} == {True, False}
    assert expected["patch"][2]["version"] == 2

    peers_python = str(await anyio.to_thread.run_sync(peers.ensure_peers_venv))
    specs = [
        (apps_under_test.library(app, seeded_copies.urls[app], peers_python), None)
        for app in apps_under_test.LIBRARY_APPS
    ]
    answers = {}
    # The library apps know no keys: the same calls, without the Authorization header.
    with serve_many(specs, tmp_path) as running:
        for app in running:
            async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as client:
                answers[app.name] = await four_calls(client, seeded)

    assert set(answers) == set(apps_under_test.LIBRARY_APPS)
    for app, calls in answers.items():
        for call, (status, content_type, body) in calls.items():
            want_status, want_type, want_body = expected[call]
            assert (status, content_type) == (want_status, want_type), (app, call, body)
            assert comparable(body) == comparable(want_body), (app, call)
