"""Idempotency keys on the creating POSTs (issue 10), on SQLite and PostgreSQL.

Under the test plugin: one request at a time. Concurrency and lost answers are in
tests/taskyard/test_idempotency_concurrency.py and tests/faults/.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sessionwise import Database
from taskyard.app import create_app
from taskyard.idempotency import create_store, idempotency_keys
from taskyard.settings import Settings
from taskyard.tasks.models import Task
from tests.taskyard.conftest import Actor, StatementCounter

API = "/api/v1"


def new_key() -> str:
    return f'"{uuid.uuid4()}"'


def keyed(actor: Actor, key: str) -> dict[str, str]:
    return {**actor.headers, "Idempotency-Key": key}


async def _project(client: httpx.AsyncClient, actor: Actor) -> int:
    response = await client.post(f"{API}/projects", json={"name": "p"}, headers=actor.headers)
    assert response.status_code == 201, response.text
    project_id: int = response.json()["id"]
    return project_id


async def _task_count(db: Database, project_id: int) -> int:
    async with db.read_session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == project_id)  # type: ignore[arg-type]
        )
    return int(count or 0)


async def _records(db: Database) -> int:
    async with db.read_session() as session:
        count = await session.scalar(select(func.count()).select_from(idempotency_keys))
    return int(count or 0)


async def test_a_retried_create_replays_the_first_answer_and_creates_once(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    body = {"project_id": project_id, "title": "once"}
    key = new_key()
    first = await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, key))
    assert first.status_code == 201, first.text
    assert "idempotency-replayed" not in first.headers
    again = await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, key))
    assert again.status_code == 201
    assert again.headers["idempotency-replayed"] == "true"
    assert again.content == first.content
    for header in ("etag", "location", "content-type"):
        assert again.headers[header] == first.headers[header]
    assert first.headers["location"] == f"{API}/tasks/{first.json()['id']}"
    assert await _task_count(isolated_db, project_id) == 1
    # A new key is a new request: a second task.
    other = await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, new_key()))
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert await _task_count(isolated_db, project_id) == 2


async def test_projects_and_workers_replay_too(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    key = new_key()
    made = [
        await api_client.post(f"{API}/projects", json={"name": "x"}, headers=keyed(alice, key))
        for _ in range(2)
    ]
    assert [r.status_code for r in made] == [201, 201]
    assert made[0].content == made[1].content
    assert made[1].headers["idempotency-replayed"] == "true"
    listing = (await api_client.get(f"{API}/projects", headers=alice.headers)).json()
    assert [p["id"] for p in listing["items"]] == [made[0].json()["id"]]

    worker = {"project_id": made[0].json()["id"], "name": "agent"}
    key = new_key()
    workers = [
        await api_client.post(f"{API}/workers", json=worker, headers=keyed(alice, key))
        for _ in range(3)
    ]
    assert {r.status_code for r in workers} == {201}
    assert {r.content for r in workers} == {workers[0].content}
    listed = (await api_client.get(f"{API}/workers", headers=alice.headers)).json()["items"]
    assert len(listed) == 1


async def test_a_retried_claim_returns_the_same_task(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    worker = await api_client.post(
        f"{API}/workers", json={"project_id": project_id, "name": "w"}, headers=alice.headers
    )
    for title in ("a", "b"):
        await api_client.post(
            f"{API}/tasks", json={"project_id": project_id, "title": title}, headers=alice.headers
        )
    claim = {"worker_id": worker.json()["id"], "lease_seconds": 60}
    key = new_key()
    first = await api_client.post(f"{API}/tasks/claim", json=claim, headers=keyed(alice, key))
    retried = await api_client.post(f"{API}/tasks/claim", json=claim, headers=keyed(alice, key))
    assert first.status_code == retried.status_code == 200
    assert retried.json()["id"] == first.json()["id"]
    assert retried.headers["etag"] == first.headers["etag"]
    assert retried.headers["idempotency-replayed"] == "true"
    second = await api_client.post(
        f"{API}/tasks/claim", json=claim, headers=keyed(alice, new_key())
    )
    assert second.json()["id"] != first.json()["id"]
    # Nothing left: a keyed 204 is stored and replayed as a 204.
    key = new_key()
    for _ in range(2):
        empty = await api_client.post(f"{API}/tasks/claim", json=claim, headers=keyed(alice, key))
        assert empty.status_code == 204
        assert empty.content == b""
    assert empty.headers["idempotency-replayed"] == "true"


async def test_the_same_key_for_a_different_request_is_a_422(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    key = new_key()
    body = {"project_id": project_id, "title": "first"}
    assert (await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, key))).is_success
    for method, path, other in (
        ("POST", f"{API}/tasks", {"project_id": project_id, "title": "second"}),
        ("POST", f"{API}/projects", {"name": "elsewhere"}),
    ):
        response = await api_client.request(method, path, json=other, headers=keyed(alice, key))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/idempotency-key-reused"
        assert "Idempotency-Key" in response.json()["detail"]
    assert await _task_count(isolated_db, project_id) == 1


async def test_keys_belong_to_their_user(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor, bob: Actor
) -> None:
    key = new_key()
    alices = await api_client.post(
        f"{API}/projects", json={"name": "same"}, headers=keyed(alice, key)
    )
    # Bob, the same key string and the very same body: his own request, his own project.
    bobs = await api_client.post(f"{API}/projects", json={"name": "same"}, headers=keyed(bob, key))
    assert alices.status_code == bobs.status_code == 201
    assert "idempotency-replayed" not in bobs.headers
    assert bobs.json()["id"] != alices.json()["id"]
    assert bobs.json()["owner_id"] == bob.id
    assert alice.name not in bobs.text
    # ... and a different body with it is no 422 for him either: nothing of Alice's shows.
    other = await api_client.post(
        f"{API}/projects", json={"name": "other"}, headers=keyed(bob, new_key())
    )
    task = {"project_id": other.json()["id"], "title": "t"}
    reused_by_bob = await api_client.post(f"{API}/tasks", json=task, headers=keyed(bob, key))
    assert reused_by_bob.status_code == 422  # his own earlier use of the key, not Alice's
    again = await api_client.post(
        f"{API}/projects", json={"name": "same"}, headers=keyed(alice, key)
    )
    assert again.content == alices.content


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('""', "empty"),
        ("abc", "quoted string"),
        ("", "quoted string"),
        ('"' + "a" * 256 + '"', "longer than 255"),
        ('"unterminated', "closing quote"),
        ('"a\\b"', "backslash"),
        ('"a";p=1', "after the closing quote"),
        ('"tab\there"', "printable ASCII"),
        ('"caf\xe9"', "non-ASCII"),
    ],
)
async def test_bad_keys_are_a_400_naming_the_header(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor, value: str, reason: str
) -> None:
    project_id = await _project(api_client, alice)
    headers = {**alice.headers, "Idempotency-Key": value.encode("latin-1")}
    response = await api_client.post(
        f"{API}/tasks", json={"project_id": project_id, "title": "t"}, headers=headers
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "/problems/invalid-request"
    assert problem["detail"].startswith("Idempotency-Key: ")
    assert reason in problem["detail"]
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert problem["errors"][0]["in"] == "header"
    assert await _task_count(isolated_db, project_id) == 0


async def test_the_longest_key_and_escapes_are_accepted(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    for value in ('"' + "k" * 255 + '"', '"quote \\" and backslash \\\\"'):
        response = await api_client.post(
            f"{API}/projects", json={"name": "k"}, headers=keyed(alice, value)
        )
        assert response.status_code == 201, response.text
    a_key_twice = [
        (b"idempotency-key", b'"one"'),
        (b"idempotency-key", b'"two"'),
        *((k.encode(), v.encode()) for k, v in alice.headers.items()),
    ]
    twice = await api_client.post(f"{API}/projects", json={"name": "k"}, headers=a_key_twice)
    assert twice.status_code == 400
    assert "once" in twice.json()["detail"]


async def test_answers_that_are_not_the_effects_are_not_stored(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    key = new_key()
    body = {"project_id": project_id, "title": "after the failures"}
    unauthorized = await api_client.post(
        f"{API}/tasks", json=body, headers={"Authorization": "Bearer nope", "Idempotency-Key": key}
    )
    assert unauthorized.status_code == 401
    invalid = await api_client.post(
        f"{API}/tasks", json={"project_id": project_id}, headers=keyed(alice, key)
    )
    assert invalid.status_code == 422
    assert invalid.json()["type"] == "/problems/validation-error"
    missing = await api_client.post(
        f"{API}/tasks", json={"project_id": 10**9, "title": "x"}, headers=keyed(alice, key)
    )
    assert missing.status_code == 404
    too_large = await api_client.post(
        f"{API}/tasks",
        content=b'{"title": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={**keyed(alice, key), "Content-Type": "application/json"},
    )
    assert too_large.status_code == 413
    assert await _records(isolated_db) == 0
    # The key is still unused: the real request runs, once.
    done = await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, key))
    assert done.status_code == 201
    assert "idempotency-replayed" not in done.headers
    assert await _records(isolated_db) == 1


async def test_records_expire_and_are_purged(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    key = new_key()
    body = {"project_id": project_id, "title": "kept a day"}
    first = await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, key))
    assert first.status_code == 201
    store = create_store(Settings())
    assert store.retention == timedelta(hours=24)
    soon = datetime.now(UTC) + timedelta(hours=23)
    assert await store.purge(isolated_db, now=soon) == 0
    replay = await api_client.post(f"{API}/tasks", json=body, headers=keyed(alice, key))
    assert replay.headers["idempotency-replayed"] == "true"
    later = datetime.now(UTC) + timedelta(hours=24, minutes=1)
    assert await store.purge(isolated_db, now=later) == 1
    assert await _records(isolated_db) == 0
    # Purged: the key is free again, even for another request.
    fresh = await api_client.post(
        f"{API}/tasks", json={**body, "title": "new"}, headers=keyed(alice, key)
    )
    assert fresh.status_code == 201
    assert "idempotency-replayed" not in fresh.headers


def test_openapi_publishes_the_header_and_the_retention() -> None:
    for hours, shown in ((24.0, "24 hours"), (72.0, "72 hours")):
        app = create_app(
            Settings(database_url="sqlite+aiosqlite:///:memory:", idempotency_retention_hours=hours)
        )
        document = app.openapi()
        assert f"kept for {shown}" in document["info"]["description"]
        keyed_operations = [
            (path, method)
            for path, item in document["paths"].items()
            for method, operation in item.items()
            if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
        ]
        assert sorted(keyed_operations) == [
            (f"{API}/projects", "post"),
            (f"{API}/tasks", "post"),
            (f"{API}/tasks/claim", "post"),
            (f"{API}/tasks/complete", "post"),
            (f"{API}/tasks/{{task_id}}/complete", "post"),
            (f"{API}/tasks/{{task_id}}/fail", "post"),
            (f"{API}/tasks/{{task_id}}/retry", "post"),
            (f"{API}/workers", "post"),
        ]
        create = document["paths"][f"{API}/tasks"]["post"]["responses"]
        assert "Idempotency-Replayed" in create["201"]["headers"]
        assert "409" in create
    with pytest.raises(ValueError, match="greater than or equal to 24"):
        Settings(idempotency_retention_hours=12)


async def _create_statements(
    client: httpx.AsyncClient, counter: StatementCounter, headers: dict[str, str], body: Any
) -> list[str]:
    counter.statements.clear()
    counter.active = True
    response = await client.post(f"{API}/tasks", json=body, headers=headers)
    counter.active = False
    assert response.status_code == 201, response.text
    return counter.statements[:]


async def test_a_key_costs_the_lookup_and_one_insert_and_no_key_costs_nothing(
    api_client: httpx.AsyncClient,
    isolated_db: Database,
    alice: Actor,
    count_statements: StatementCounter,
) -> None:
    project_id = await _project(api_client, alice)
    body = {"project_id": project_id, "title": "counted"}
    plain = await _create_statements(api_client, count_statements, alice.headers, body)
    assert not [s for s in plain if "idempotency_keys" in s]
    # The key lookup, the project/assignee lookup, the insert (issue 5's create path).
    work = [s for s in plain if not s.upper().lstrip().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(work) == 3, plain

    key = new_key()
    first = await _create_statements(api_client, count_statements, keyed(alice, key), body)
    extra = [s for s in first if "idempotency_keys" in s]
    assert len(first) == len(plain) + 2, first
    assert [s.split()[0].upper() for s in extra] == ["SELECT", "INSERT"], extra

    replay = await _create_statements(api_client, count_statements, keyed(alice, key), body)
    # A replay: the caller's key lookup and the idempotency lookup, nothing written.
    assert not [s for s in replay if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len([s for s in replay if "idempotency_keys" in s]) == 1
