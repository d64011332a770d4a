"""One key, many requests at once: exactly one effect (real transactions, both backends)."""

from __future__ import annotations

import uuid
from collections import Counter

import anyio
import httpx
from sqlalchemy import func
from sqlmodel import col, select

from sessionwise import Database
from taskyard.tasks.models import Task, TaskStatus
from tests.taskyard.conftest import Actor, create_actor, running_app

API = "/api/v1"
REQUESTS = 20


async def _at_once(
    client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str]
) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    start = anyio.Event()

    async def one() -> None:
        await start.wait()
        responses.append(await client.post(path, json=body, headers=headers))

    async with anyio.create_task_group() as group:
        for _ in range(REQUESTS):
            group.start_soon(one)
        start.set()
    return responses


def _check_one_effect(responses: list[httpx.Response], effect_status: int) -> httpx.Response:
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {effect_status, 409}, [(r.status_code, r.text) for r in responses]
    originals = [r for r in responses if r.status_code == effect_status]
    firsts = [r for r in originals if "idempotency-replayed" not in r.headers]
    assert len(firsts) == 1, statuses
    assert {r.content for r in originals} == {firsts[0].content}
    for busy in (r for r in responses if r.status_code == 409):
        assert busy.headers["content-type"] == "application/problem+json"
        assert busy.json()["type"] == "/problems/idempotency-key-in-use"
        assert int(busy.headers["retry-after"]) >= 1
    return firsts[0]


async def _owner_with_project(client: httpx.AsyncClient, db: Database) -> tuple[Actor, int]:
    owner = await create_actor(db, "owner")
    project = await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
    return owner, project.json()["id"]


async def test_twenty_creates_with_one_key_create_one_task(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner, project_id = await _owner_with_project(client, db)
        headers = {**owner.headers, "Idempotency-Key": f'"{uuid.uuid4()}"'}
        body = {"project_id": project_id, "title": "exactly once"}
        responses = await _at_once(client, f"{API}/tasks", body, headers)
        first = _check_one_effect(responses, 201)
        async with db.read_session() as session:
            stored = await session.scalar(
                select(func.count()).select_from(Task).where(Task.project_id == project_id)
            )
        assert stored == 1
        # Once the first has committed, every retry is a replay of it.
        late = await client.post(f"{API}/tasks", json=body, headers=headers)
        assert late.status_code == 201
        assert late.headers["idempotency-replayed"] == "true"
        assert late.content == first.content


async def test_twenty_claims_with_one_key_claim_one_task(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner, project_id = await _owner_with_project(client, db)
        worker = await client.post(
            f"{API}/workers", json={"project_id": project_id, "name": "w"}, headers=owner.headers
        )
        async with db.session() as session:
            session.add_all(Task(project_id=project_id, title=f"t{n}") for n in range(30))
        headers = {**owner.headers, "Idempotency-Key": f'"{uuid.uuid4()}"'}
        claim = {"worker_id": worker.json()["id"], "lease_seconds": 60}
        responses = await _at_once(client, f"{API}/tasks/claim", claim, headers)
        first = _check_one_effect(responses, 200)
        async with db.read_session() as session:
            claimed = (
                await session.exec(
                    select(col(Task.id)).where(
                        Task.project_id == project_id, Task.status == TaskStatus.IN_PROGRESS
                    )
                )
            ).all()
        assert list(claimed) == [first.json()["id"]]
