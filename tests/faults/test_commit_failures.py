"""Fault 4: the database refuses a transaction only at COMMIT.

Deferred constraints are checked when the transaction commits, after every statement of the
request succeeded. The test adds some to the schema of its own database copy. Promise: the
answer is not 2xx (the commit happens before the response is sent), it says why, and nothing
of the request is stored.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.direct_sql import pg_fetch
from tests.support.postgres_cluster import PostgresCluster
from tests.support.served_app import ServedApp
from tests.support.taskyard_api import create_project, create_task, create_worker

pytestmark = pytest.mark.faults

# A title starting with "poison" violates a CHECK-like rule, but only at COMMIT; one starting
# with "conflict" fails the commit with a serialization failure (SQLSTATE 40001), as a
# SERIALIZABLE transaction would. Worker names become unique per project, checked at COMMIT.
DEFERRED_RULES = """
CREATE FUNCTION faults_check_title() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.title LIKE 'poison%' THEN
    RAISE EXCEPTION 'title % refused at commit', NEW.title USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.title LIKE 'conflict%' THEN
    RAISE EXCEPTION 'title % conflicts', NEW.title USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER faults_title_at_commit AFTER INSERT OR UPDATE ON tasks
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION faults_check_title();
ALTER TABLE workers ADD CONSTRAINT faults_unique_worker_name
  UNIQUE (project_id, name) DEFERRABLE INITIALLY DEFERRED;
"""


@pytest.fixture(scope="module")
def app(served_module: ServedApp, cluster: PostgresCluster) -> ServedApp:
    database = make_url(served_module.database_url).database
    assert database is not None
    cluster.psql(DEFERRED_RULES, database=database)
    return served_module


def _assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_create_refused_at_commit_is_not_2xx_and_not_stored(app: ServedApp) -> None:
    async with app.client(timeout=10) as client:
        project_id = await create_project(client)
        response = await client.post(
            "/api/v1/tasks", json={"project_id": project_id, "title": "poison-create"}
        )
    _assert_problem(response, 409)
    rows = await pg_fetch(app.database_url, "SELECT id FROM tasks WHERE title = 'poison-create'")
    assert rows == []


async def test_update_refused_at_commit_leaves_the_task_unchanged(app: ServedApp) -> None:
    async with app.client(timeout=10) as client:
        project_id = await create_project(client)
        task = await create_task(client, project_id, title="healthy", priority=3)
        response = await client.patch(
            f"/api/v1/tasks/{task['id']}",
            json={"title": "poison-update", "priority": 9},
            headers={"If-Match": f'"{task["version"]}"'},
        )
        _assert_problem(response, 409)
        after = (await client.get(f"/api/v1/tasks/{task['id']}")).json()
    assert (after["title"], after["priority"], after["version"]) == ("healthy", 3, task["version"])
    rows = await pg_fetch(
        app.database_url, "SELECT title, priority, version FROM tasks WHERE id = $1", task["id"]
    )
    assert [tuple(row) for row in rows] == [("healthy", 3, task["version"])]


async def test_serialization_failure_at_commit_answers_503(app: ServedApp) -> None:
    async with app.client(timeout=10) as client:
        project_id = await create_project(client)
        response = await client.post(
            "/api/v1/tasks", json={"project_id": project_id, "title": "conflict-create"}
        )
    _assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    rows = await pg_fetch(app.database_url, "SELECT id FROM tasks WHERE title = 'conflict-create'")
    assert rows == []


async def test_deferred_unique_violation_answers_409_and_stores_nothing(app: ServedApp) -> None:
    async with app.client(timeout=10) as client:
        project_id = await create_project(client)
        await create_worker(client, project_id, name="twin")
        response = await client.post(
            "/api/v1/workers", json={"project_id": project_id, "name": "twin"}
        )
    _assert_problem(response, 409)
    rows = await pg_fetch(
        app.database_url, "SELECT id FROM workers WHERE project_id = $1", project_id
    )
    assert len(rows) == 1


async def test_a_keyed_create_refused_at_commit_leaves_no_record(app: ServedApp) -> None:
    """Issue 10: the key's record is in the refused transaction too, so nothing is replayed."""
    key = '"refused-at-commit"'
    async with app.client(timeout=10) as client:
        project_id = await create_project(client)
        body = {"project_id": project_id, "title": "conflict-keyed"}
        for _attempt in range(2):  # the retry runs again (and fails again): not a replay
            response = await client.post(
                "/api/v1/tasks", json=body, headers={"Idempotency-Key": key}
            )
            _assert_problem(response, 503)
            assert "idempotency-replayed" not in response.headers
    assert await pg_fetch(app.database_url, "SELECT key FROM idempotency_keys") == []
    assert (
        await pg_fetch(app.database_url, "SELECT id FROM tasks WHERE title = 'conflict-keyed'")
        == []
    )
