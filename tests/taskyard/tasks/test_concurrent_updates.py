"""Optimistic concurrency under real concurrency: no update is ever lost."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from sessionwise import Database
from taskyard.tasks.models import Task
from tests.taskyard.conftest import Actor, create_actor, running_app

API = "/api/v1"
WRITERS = 20


async def _one_task(client: httpx.AsyncClient, db: Database) -> tuple[Actor, int]:
    owner = await create_actor(db, "owner")
    project_id = (
        await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
    ).json()["id"]
    task = await client.post(
        f"{API}/tasks", json={"project_id": project_id, "title": "original"}, headers=owner.headers
    )
    return owner, task.json()["id"]


async def _patch(
    client: httpx.AsyncClient, owner: Actor, task_id: int, title: str, if_match: str | None
) -> httpx.Response:
    headers = dict(owner.headers)
    if if_match is not None:
        headers["If-Match"] = if_match
    for _ in range(20):
        response = await client.patch(
            f"{API}/tasks/{task_id}", json={"title": title}, headers=headers
        )
        if response.status_code != 503:  # busy, nothing done: retry (SQLite lock wait ran out)
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"still 503 after 20 tries: {response.text}")


async def test_concurrent_patches_with_one_etag_exactly_one_wins(database_url: str) -> None:
    async with running_app(database_url, pool_size=WRITERS, max_overflow=0) as (client, db):
        owner, task_id = await _one_task(client, db)
        etag = (await client.get(f"{API}/tasks/{task_id}", headers=owner.headers)).headers["etag"]
        responses = await asyncio.gather(
            *(_patch(client, owner, task_id, f"writer {n}", etag) for n in range(WRITERS))
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: 1, 412: WRITERS - 1}, statuses
        winner = next(r for r in responses if r.status_code == 200).json()
        assert winner["version"] == 2
        for loser in (r for r in responses if r.status_code == 412):
            assert loser.headers["content-type"] == "application/problem+json"
            assert loser.json()["type"] == "/problems/precondition-failed"
        async with db.read_session() as session:
            stored = await session.get(Task, task_id)
        assert stored is not None
        assert (stored.title, stored.version) == (winner["title"], 2)


async def test_concurrent_patches_without_if_match_all_apply_and_count(database_url: str) -> None:
    async with running_app(database_url, pool_size=WRITERS, max_overflow=0) as (client, db):
        owner, task_id = await _one_task(client, db)
        responses = await asyncio.gather(
            *(_patch(client, owner, task_id, f"writer {n}", None) for n in range(WRITERS))
        )
        assert {r.status_code for r in responses} == {200}
        # Every write got its own version: none was silently overwritten in between.
        versions = sorted(r.json()["version"] for r in responses)
        assert versions == list(range(2, WRITERS + 2))
        async with db.read_session() as session:
            stored = await session.get(Task, task_id)
        assert stored is not None
        assert stored.version == WRITERS + 1
        last = next(r.json() for r in responses if r.json()["version"] == WRITERS + 1)
        assert stored.title == last["title"]


async def test_if_match_forms(database_url: str) -> None:
    async with running_app(database_url) as (client, db):
        owner, task_id = await _one_task(client, db)
        url = f"{API}/tasks/{task_id}"

        async def patch(if_match: str) -> httpx.Response:
            return await client.patch(
                url, json={"priority": 1}, headers={**owner.headers, "If-Match": if_match}
            )

        assert (await patch('W/"1"')).status_code == 412  # weak tags never match (RFC 9110)
        assert (await patch('"7", "1"')).status_code == 200  # any listed tag may match
        assert (await patch("*")).status_code == 200
        assert (await patch('"99999999999999999999"')).status_code == 412
        malformed = await patch("3")
        assert malformed.status_code == 422
        assert malformed.json()["errors"][0]["field"] == "If-Match"
        # An empty PATCH changes nothing, so the version stays.
        read = await client.get(url, headers=owner.headers)
        empty = await client.patch(
            url, json={}, headers={**owner.headers, "If-Match": read.headers["etag"]}
        )
        assert empty.status_code == 200
        assert empty.headers["etag"] == read.headers["etag"] == '"3"'
