"""No N+1: a listing loads the project and assignee of every task in the same statement."""

from __future__ import annotations

import httpx

from sessionwise import Database
from taskyard.tasks.models import Task
from taskyard.workers.models import Worker
from tests.taskyard.conftest import Actor, StatementCounter

API = "/api/v1"


async def _project_with_tasks(
    client: httpx.AsyncClient, db: Database, owner: Actor, count: int
) -> int:
    project_id: int = (
        await client.post(f"{API}/projects", json={"name": f"p{count}"}, headers=owner.headers)
    ).json()["id"]
    async with db.session() as session:
        workers = [Worker(project_id=project_id, name=f"w{n}") for n in range(5)]
        session.add_all(workers)
        await session.flush()
        session.add_all(
            Task(project_id=project_id, title=f"t{n}", assignee_id=workers[n % 5].id)
            for n in range(count)
        )
    return project_id


async def _count_listing(
    client: httpx.AsyncClient, counter: StatementCounter, owner: Actor, project_id: int, limit: int
) -> tuple[int, list[str]]:
    counter.statements.clear()
    counter.active = True
    response = await client.get(
        f"{API}/tasks", params={"project_id": project_id, "limit": limit}, headers=owner.headers
    )
    counter.active = False
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == limit
    assert all(item["assignee"]["name"].startswith("w") for item in items)
    assert all(item["project"]["id"] == project_id for item in items)
    return len(counter.statements), counter.statements[:]


async def test_listing_100_tasks_runs_as_few_statements_as_listing_10(
    api_client: httpx.AsyncClient,
    isolated_db: Database,
    alice: Actor,
    count_statements: StatementCounter,
) -> None:
    small = await _project_with_tasks(api_client, isolated_db, alice, 10)
    large = await _project_with_tasks(api_client, isolated_db, alice, 100)
    ten, _ = await _count_listing(api_client, count_statements, alice, small, 10)
    hundred, statements = await _count_listing(api_client, count_statements, alice, large, 100)
    assert ten == hundred
    # The key lookup and the listing; the rest is transaction control (savepoints here).
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, statements
    assert hundred <= 6, statements


async def test_reading_one_task_is_two_selects(
    api_client: httpx.AsyncClient,
    isolated_db: Database,
    alice: Actor,
    count_statements: StatementCounter,
) -> None:
    project_id = await _project_with_tasks(api_client, isolated_db, alice, 1)
    listing = await api_client.get(
        f"{API}/tasks", params={"project_id": project_id}, headers=alice.headers
    )
    task_id = listing.json()["items"][0]["id"]
    count_statements.active = True
    response = await api_client.get(f"{API}/tasks/{task_id}", headers=alice.headers)
    count_statements.active = False
    assert response.json()["assignee"] is not None
    selects = [s for s in count_statements.statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, count_statements.statements
