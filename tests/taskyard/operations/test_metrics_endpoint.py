"""``GET /metrics`` after real traffic, parsed with Prometheus's own text parser.

Counts move as they should: requests by route template, method and status class; tasks
created and claimed (a claim of a task whose lease expired counts as such); sessionwise's pool
and session metrics for the app's pools. Loopback clients need no token, others need
``TASKYARD_METRICS_TOKEN``; the endpoint is not part of the API's schema.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import asyncpg
import httpx
import pytest
from sqlalchemy import text, update

from taskyard.tasks.models import Task
from tests.conftest import _asyncpg_dsn
from tests.sessionwise.metrics.scrape import Scrape
from tests.support.taskyard_api import create_project, create_task, create_worker
from tests.support.waiting import wait_until
from tests.taskyard.board.board_client import sign_in
from tests.taskyard.operations.conftest import operated_app

DURATION = "http_server_request_duration_seconds_count"
TOKEN = "metrics-token-for-tests"


def _requests(metrics: Scrape, method: str, route: str, status_class: str) -> float:
    return metrics.value(DURATION, method=method, route=route, status_class=status_class)


async def test_traffic_moves_request_queue_and_pool_metrics(database_url: str) -> None:
    async with operated_app(database_url) as app, app.client() as client:
        project = await create_project(client)
        worker = await create_worker(client, project)
        first = await create_task(client, project)
        await create_task(client, project)
        claim = await client.post("/api/v1/tasks/claim", json={"worker_id": worker})
        assert claim.status_code == 200, claim.text
        assert (await client.get(f"/api/v1/tasks/{first['id']}")).status_code == 200
        assert (await client.get("/api/v1/tasks/999999")).status_code == 404
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.request("BREW", "/api/v1/tasks")).status_code == 405

        metrics = await app.scrape()

    assert _requests(metrics, "POST", "/api/v1/tasks", "2xx") == 2
    assert _requests(metrics, "POST", "/api/v1/tasks/claim", "2xx") == 1
    assert _requests(metrics, "GET", "/api/v1/tasks/{task_id}", "2xx") == 1
    assert _requests(metrics, "GET", "/api/v1/tasks/{task_id}", "4xx") == 1
    assert _requests(metrics, "GET", "unmatched", "4xx") == 1
    assert _requests(metrics, "other", "/api/v1/tasks", "4xx") == 1
    # Templates only: no literal path, no made-up method.
    assert f"/api/v1/tasks/{first['id']}" not in metrics.text
    assert "/no/such/path" not in metrics.text
    assert "BREW" not in metrics.text

    assert metrics.value("taskyard_tasks_created_total") == 2
    assert metrics.value("taskyard_tasks_claimed_total") == 1
    assert metrics.value("taskyard_task_claim_latency_seconds_count") == 1
    assert metrics.value("taskyard_task_leases_expired_total") == 0

    pool = {"pool_name": "primary"}
    assert metrics.value("db_client_connection_max", **pool) == 15  # the test's pool_size
    assert metrics.value("db_client_connection_count", state="used", **pool) == 0
    assert metrics.value("db_client_connection_count", state="idle", **pool) >= 1
    assert metrics.value("db_client_connection_wait_time_seconds_count", **pool) >= 5
    committed = metrics.total("sessionwise_session_duration_seconds_count", outcome="committed")
    assert committed >= 5  # project, worker, two tasks, claim (and the test's user)
    rolled_back = metrics.total("sessionwise_session_duration_seconds_count", outcome="rolled_back")
    assert rolled_back >= 1  # the 404 of GET /tasks/999999 (a ProblemError in its session)


async def test_queue_events_count_complete_fail_dead_and_expired_leases(sqlite_url: str) -> None:
    # No backoff: a task whose lease ran out is due again at once.
    async with operated_app(sqlite_url, retry_base_delay=0.0) as app, app.client() as client:
        project = await create_project(client)
        worker = await create_worker(client, project)
        for _ in range(3):
            await create_task(client, project, max_attempts=1)
        done = (await client.post("/api/v1/tasks/claim", json={"worker_id": worker})).json()
        completed = await client.post(
            f"/api/v1/tasks/{done['id']}/complete", json={"worker_id": worker, "result": 1}
        )
        assert completed.status_code == 200, completed.text
        failing = (await client.post("/api/v1/tasks/claim", json={"worker_id": worker})).json()
        failed = await client.post(
            f"/api/v1/tasks/{failing['id']}/fail", json={"worker_id": worker, "error": "boom"}
        )
        assert failed.json()["status"] == "dead"
        vanished = (await client.post("/api/v1/tasks/claim", json={"worker_id": worker})).json()
        async with app.db.session() as session:  # its worker vanished an hour ago
            expired = datetime.now(UTC) - timedelta(hours=1)
            await session.execute(
                update(Task).where(Task.id == vanished["id"]).values(lease_expires_at=expired)
            )
        # The next claim takes the lease back first (its only attempt: the task is dead).
        nothing = await client.post("/api/v1/tasks/claim", json={"worker_id": worker})
        assert nothing.status_code == 204
        # A batch: two claimed in one request, completed in one request.
        for _ in range(2):
            await create_task(client, project)
        batch = await client.post("/api/v1/tasks/claim", json={"worker_id": worker, "limit": 5})
        items = [{"id": task["id"], "result": None} for task in batch.json()["items"]]
        assert len(items) == 2
        finished = await client.post(
            "/api/v1/tasks/complete", json={"worker_id": worker, "items": items}
        )
        assert finished.status_code == 200, finished.text
        metrics = await app.scrape()
    assert metrics.value("taskyard_tasks_created_total") == 5
    assert metrics.value("taskyard_tasks_claimed_total") == 5
    assert metrics.value("taskyard_tasks_completed_total") == 3
    assert metrics.value("taskyard_task_attempts_failed_total") == 1
    assert metrics.value("taskyard_tasks_dead_total") == 1  # the failed one; expiry is apart
    assert metrics.value("taskyard_task_leases_expired_total") == 1
    assert metrics.value("taskyard_task_claim_latency_seconds_count") == 5


@pytest.mark.postgres
async def test_a_create_whose_commit_fails_is_not_counted(postgres_url: str) -> None:
    async with operated_app(postgres_url) as app, app.client() as client:
        project = await create_project(client)
        await create_task(client, project)
        # A deferred constraint trigger: the INSERT succeeds, the COMMIT fails. The task was
        # never created, and the counter must not say it was.
        async with app.db.session() as session:
            await session.execute(
                text(
                    "CREATE FUNCTION veto() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'vetoed at commit'; END $$"
                )
            )
            await session.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER veto_tasks AFTER INSERT ON tasks "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION veto()"
                )
            )
        refused = await client.post("/api/v1/tasks", json={"project_id": project, "title": "t"})
        assert refused.status_code == 500
        metrics = await app.scrape()
    assert metrics.value("taskyard_tasks_created_total") == 1
    failed = metrics.total("sessionwise_session_duration_seconds_count", outcome="failed")
    assert failed == 1


@pytest.mark.postgres
async def test_exhausted_pool_shows_pending_requests_and_counts_the_timeout(
    postgres_url: str,
) -> None:
    # pool_timeout long enough that a loaded machine's scrape sees the create waiting.
    database = {"pool_size": 1, "pool_timeout": 3.0, "read_sessions": "transaction"}
    database |= {"lock_timeout": 600.0, "statement_timeout": 600.0}
    async with operated_app(postgres_url, database=database) as app, app.client() as client:
        project = await create_project(client)
        task = await create_task(client, project)
        # A row lock held from outside the app keeps a PATCH, and the pool's only
        # connection, waiting; a create then waits for the pool until pool_timeout.
        outside = await asyncpg.connect(_asyncpg_dsn(postgres_url))
        answers: dict[str, int] = {}
        try:
            lock = outside.transaction()
            await lock.start()
            await outside.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task["id"])

            async def patch() -> None:
                path = f"/api/v1/tasks/{task['id']}"
                answers["patch"] = (await client.patch(path, json={"title": "x"})).status_code

            async def create() -> None:
                body = {"project_id": project, "title": "starved"}
                answers["create"] = (await client.post("/api/v1/tasks", json=body)).status_code

            async def one_pending() -> bool:
                metrics = await app.scrape()
                pending = metrics.value(
                    "db_client_connection_pending_requests", pool_name="primary"
                )
                return pending == 1

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(patch)
                await wait_until(lambda: app.db.pool_status().checked_out == 1)
                tasks.start_soon(create)
                await wait_until(one_pending)
                await wait_until(lambda: "create" in answers)
                await lock.rollback()
        finally:
            await outside.close()
        metrics = await app.scrape()

    assert answers == {"patch": 200, "create": 503}
    assert metrics.value("db_client_connection_timeouts_total", pool_name="primary") == 1
    assert metrics.value("db_client_connection_pending_requests", pool_name="primary") == 0
    assert _requests(metrics, "POST", "/api/v1/tasks", "5xx") == 1
    assert metrics.value("taskyard_tasks_created_total") == 1  # the first task only


async def test_loopback_needs_no_token_others_need_it(sqlite_url: str) -> None:
    async with operated_app(sqlite_url, metrics_token=TOKEN) as app:
        for loopback in ("127.0.0.1", "::1"):
            async with app.client(client=(loopback, 4000)) as client:
                assert (
                    await client.get("/metrics", headers={"Authorization": ""})
                ).status_code == 200
        async with app.client(client=("203.0.113.9", 4000)) as remote:
            anonymous = await remote.get("/metrics", headers={"Authorization": ""})
            wrong = await remote.get("/metrics", headers={"Authorization": "Bearer nope"})
            basic = await remote.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
            right = await remote.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        schema = (await _openapi(app.client())).get("paths", {})
    for refused in (anonymous, wrong, basic):
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/forbidden"
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain")
    assert "/metrics" not in schema


async def test_without_a_token_remote_clients_are_refused(sqlite_url: str) -> None:
    async with operated_app(sqlite_url) as app, app.client(client=("10.1.2.3", 4000)) as remote:
        response = await remote.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403


async def test_metrics_off_means_no_endpoint(sqlite_url: str) -> None:
    async with operated_app(sqlite_url, metrics=False) as app, app.client() as client:
        assert (await client.get("/metrics")).status_code == 404


async def _openapi(client: httpx.AsyncClient) -> dict[str, object]:
    async with client:
        document: dict[str, object] = (await client.get("/openapi.json")).json()
    return document


async def test_a_mounted_sub_app_is_labelled_with_its_prefix(sqlite_url: str) -> None:
    async with operated_app(sqlite_url) as app, app.client() as client:
        await client.get("/board/projects/4711")  # the board redirects to its sign-in page
        metrics = await app.scrape()
    routes = {labels for (name, labels) in metrics.samples if name == DURATION}
    assert any(("route", "/board/projects/{project_id}") in labels for labels in routes)
    assert "4711" not in metrics.text


async def test_a_task_created_on_the_board_is_counted(sqlite_url: str) -> None:
    async with operated_app(sqlite_url) as app, app.client() as client:
        project = await create_project(client)
        visitor = await sign_in(client, app.actor.api_key)
        created = await visitor.post(f"/projects/{project}/tasks", {"title": "from the board"})
        assert created.status_code in (200, 303), created.text
        metrics = await app.scrape()
    assert metrics.value("taskyard_tasks_created_total") == 1
