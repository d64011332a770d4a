"""taskyard on a multi-host ``TASKYARD_DATABASE_URL`` with ``target_session_attrs=read-write``.

Issue 12, "seen here today": every GET answered 500, because the autocommit read pool
connected with ``default_transaction_read_only=on`` and asyncpg's read-write check rejected
that session on every host. The sessionwise side is in tests/sessionwise/test_multi_host.py.
"""

from __future__ import annotations

import httpx
import pytest

from taskyard.app import create_app
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from tests.sessionwise.test_multi_host import multi_host_url
from tests.support.ports import free_port
from tests.taskyard.conftest import create_actor

pytestmark = pytest.mark.postgres


async def test_taskyard_answers_reads_and_writes_on_a_multi_host_url(postgres_url: str) -> None:
    url = multi_host_url(postgres_url, first_port=free_port())
    app = create_app(Settings(database_url=url))  # taskyard's defaults: autocommit reads
    async with app.router.lifespan_context(app):
        db = app.state.sessionwise_database
        await upgrade(db)
        actor = await create_actor(db, "multihost")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://taskyard", headers=actor.headers
        ) as client:
            created = await client.post("/api/v1/projects", json={"name": "multi-host"})
            assert created.status_code == 201, created.text
            listed = await client.get("/api/v1/projects")
            assert listed.status_code == 200, listed.text
            assert [project["name"] for project in listed.json()["items"]] == ["multi-host"]
            fetched = await client.get(f"/api/v1/projects/{created.json()['id']}")
            assert fetched.status_code == 200, fetched.text
