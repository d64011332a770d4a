"""Failures at commit time and database outages answer 4xx/5xx, never 2xx; nothing half-done."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import select

from sessionwise import DatabaseConfig
from taskyard.app import create_app
from taskyard.settings import Settings
from taskyard.tasks.models import Task
from tests.taskyard.conftest import create_actor, running_app

API = "/api/v1"
WELL_FORMED_KEY = {"Authorization": "Bearer ty_0123456789ab_" + "x" * 43}

# A constraint checked only at COMMIT: the INSERT succeeds, the commit fails.
_DEFERRED_FAILURE = {
    "postgresql": [
        """CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.title = 'doomed' THEN
               RAISE EXCEPTION 'doomed task' USING ERRCODE = '23514';
             END IF;
             RETURN NEW;
           END $$""",
        """CREATE CONSTRAINT TRIGGER doomed AFTER INSERT ON tasks
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_doomed()""",
    ],
    "sqlite": [
        "CREATE TABLE doom_parent (id INTEGER PRIMARY KEY)",
        """CREATE TABLE doom_child (
             parent_id INTEGER REFERENCES doom_parent (id) DEFERRABLE INITIALLY DEFERRED)""",
        """CREATE TRIGGER doomed AFTER INSERT ON tasks WHEN NEW.title = 'doomed'
           BEGIN INSERT INTO doom_child VALUES (42); END""",
    ],
}


async def test_a_commit_that_fails_is_not_reported_as_success(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner = await create_actor(db)
        project_id = (
            await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
        ).json()["id"]
        async with db.session() as session:
            for statement in _DEFERRED_FAILURE[db.engine.dialect.name]:
                await session.exec(text(statement))

        response = await client.post(
            f"{API}/tasks",
            json={"project_id": project_id, "title": "doomed"},
            headers=owner.headers,
        )
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/conflict"
        async with db.read_session() as session:
            assert list(await session.exec(select(Task))) == []

        # Nothing stuck: the next write goes through.
        fine = await client.post(
            f"{API}/tasks", json={"project_id": project_id, "title": "fine"}, headers=owner.headers
        )
        assert fine.status_code == 201
        async with db.read_session() as session:
            assert [t.title for t in await session.exec(select(Task))] == ["fine"]


def _unreachable_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_an_unreachable_database_answers_503_with_retry_after(
    kind: str, tmp_path: Path
) -> None:
    config = DatabaseConfig(pool_timeout=1.0)
    app = create_app(Settings(database_url=_unreachable_url(kind, tmp_path), database=config))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for method, path, body in [
                ("GET", "/projects", None),
                ("POST", "/projects", {"name": "p"}),
                ("GET", "/tasks/1", None),
                ("POST", "/tasks/claim", {"worker_id": 1, "lease_seconds": 5}),
            ]:
                response = await client.request(
                    method, API + path, json=body, headers=WELL_FORMED_KEY
                )
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "1"
                assert response.json()["type"] == "/problems/service-unavailable"
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["pool"]["checked_out"] == 0
            assert (await client.get("/health/live")).status_code == 200


async def test_pool_exhaustion_answers_503_then_recovers(database_url: str) -> None:
    async with running_app(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5) as (
        client,
        db,
    ):
        owner = await create_actor(db)
        async with db.engine.connect() as held:  # the pool's only connection
            await held.execute(text("SELECT 1"))
            busy = await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
            assert busy.status_code == 503, busy.text
            assert busy.headers["retry-after"] == "1"
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT count(*) FROM projects")) == 0
        assert (
            await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
        ).status_code == 201


async def test_a_statement_timeout_answers_504_and_changes_nothing(postgres_url: str) -> None:
    async with running_app(postgres_url, statement_timeout=0.5) as (client, db):
        owner = await create_actor(db)
        project_id = (
            await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
        ).json()["id"]
        task_id = (
            await client.post(
                f"{API}/tasks", json={"project_id": project_id, "title": "t"}, headers=owner.headers
            )
        ).json()["id"]
        blocker = await asyncpg.connect(
            make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                stuck = await client.patch(
                    f"{API}/tasks/{task_id}", json={"title": "x"}, headers=owner.headers
                )
                assert stuck.status_code == 504, stuck.text
                assert stuck.json()["type"] == "/problems/database-timeout"
        finally:
            await blocker.close()
        after = await client.get(f"{API}/tasks/{task_id}", headers=owner.headers)
        assert (after.json()["title"], after.json()["version"]) == ("t", 1)
