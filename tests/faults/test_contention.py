"""Fault 5: many clients race for the same rows, over real HTTP, on both databases.

Promises: with the same ``If-Match``, exactly one of concurrent PATCHes wins and the rest get
412; without it every PATCH applies and ``version`` counts every one; concurrent claims hand
out each task exactly once; concurrent creates on SQLite queue for the write lock instead of
failing with "database is locked".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import anyio
import httpx
import pytest

from tests.faults.conftest import Template, serve_clone
from tests.support.direct_sql import fetch_rows
from tests.support.postgres_cluster import PostgresCluster
from tests.support.served_app import ServedApp, serve_taskyard
from tests.support.taskyard_api import create_project, create_task, create_worker

pytestmark = pytest.mark.faults

RACERS = 20
CLAIMERS = 8
TASKS_TO_CLAIM = 60
CREATES = 60


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        with serve_taskyard(f"sqlite+aiosqlite:///{workdir / 'taskyard.db'}", workdir) as served:
            yield served
        return
    cluster: PostgresCluster = request.getfixturevalue("cluster")
    template: Template = request.getfixturevalue("template")
    with serve_clone(cluster, template, workdir) as served:
        yield served


def _client(app: ServedApp) -> httpx.AsyncClient:
    return app.client(timeout=30, limits=httpx.Limits(max_connections=RACERS + CLAIMERS))


async def test_same_if_match_exactly_one_patch_wins(app: ServedApp) -> None:
    async with _client(app) as client:
        task = await create_task(client, await create_project(client))
        statuses: dict[int, int] = {}

        async def patch(index: int) -> None:
            response = await client.patch(
                f"/api/v1/tasks/{task['id']}",
                json={"title": f"racer-{index}"},
                headers={"If-Match": f'"{task["version"]}"'},
            )
            statuses[index] = response.status_code

        async with anyio.create_task_group() as group:
            for index in range(RACERS):
                group.start_soon(patch, index)
        final = (await client.get(f"/api/v1/tasks/{task['id']}")).json()

    assert Counter(statuses.values()) == {200: 1, 412: RACERS - 1}, statuses
    winner = next(index for index, status in statuses.items() if status == 200)
    assert final["title"] == f"racer-{winner}"
    assert final["version"] == task["version"] + 1


async def test_patches_without_if_match_never_lose_a_version(app: ServedApp) -> None:
    async with _client(app) as client:
        task = await create_task(client, await create_project(client))
        statuses: list[int] = []

        async def patch(index: int) -> None:
            response = await client.patch(
                f"/api/v1/tasks/{task['id']}", json={"priority": index % 100}
            )
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for index in range(RACERS):
                group.start_soon(patch, index)
        final = (await client.get(f"/api/v1/tasks/{task['id']}")).json()

    assert statuses == [200] * RACERS
    assert final["version"] == task["version"] + RACERS


async def test_concurrent_claims_hand_out_each_task_once(app: ServedApp) -> None:
    async with _client(app) as client:
        project_id = await create_project(client)
        workers = [await create_worker(client, project_id) for _ in range(CLAIMERS)]
        task_ids = {(await create_task(client, project_id))["id"] for _ in range(TASKS_TO_CLAIM)}
        claims: list[tuple[int, int]] = []  # (task id, worker id)
        failures: list[str] = []

        async def claim_until_empty(worker_id: int) -> None:
            while True:
                response = await client.post(
                    "/api/v1/tasks/claim", json={"worker_id": worker_id, "lease_seconds": 60}
                )
                if response.status_code == 204:
                    return
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                    return
                claimed = response.json()
                assert claimed["assignee"]["id"] == worker_id
                claims.append((claimed["id"], worker_id))

        async with anyio.create_task_group() as group:
            for worker_id in workers:
                group.start_soon(claim_until_empty, worker_id)

    assert not failures, failures
    claimed_ids = [task_id for task_id, _ in claims]
    assert Counter(claimed_ids).most_common(1)[0][1] == 1, "a task was claimed twice"
    assert set(claimed_ids) == task_ids
    rows = await fetch_rows(
        app.database_url,
        "SELECT id, assignee_id, status FROM tasks WHERE project_id = $1",
        project_id,
    )
    assert sorted(rows) == sorted((task_id, worker, "in_progress") for task_id, worker in claims)


async def test_concurrent_creates_all_succeed_and_are_stored(app: ServedApp) -> None:
    async with _client(app) as client:
        project_id = await create_project(client)
        answers: dict[str, httpx.Response] = {}

        async def create(index: int) -> None:
            title = f"concurrent-{index}"
            answers[title] = await client.post(
                "/api/v1/tasks", json={"project_id": project_id, "title": title}
            )

        async with anyio.create_task_group() as group:
            for index in range(CREATES):
                group.start_soon(create, index)

    refused = {title: r.text for title, r in answers.items() if r.status_code != 201}
    assert not refused, refused
    assert "database is locked" not in app.log()
    rows = await fetch_rows(
        app.database_url, "SELECT id, title FROM tasks WHERE project_id = $1", project_id
    )
    assert sorted(rows) == sorted((r.json()["id"], title) for title, r in answers.items())
