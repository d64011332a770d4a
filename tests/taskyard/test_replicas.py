"""taskyard with a streaming replica, served for real (issue 12, points 1-4).

A throwaway primary and replica on loopback ports; ``taskyard serve --workers 2`` (server A)
and a second ``taskyard serve`` process (server B) on the same database, so that a write
answered by one process is read back through another in every test. Statements are counted
in each server's log (``log_statement=all``, lines prefixed with the application name).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from sessionwise import Database
from taskyard.app import create_database
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService
from tests.support.replication import Replicated, replicated_database, statement_count
from tests.support.served_app import ServedApp, User, serve_taskyard

# Two servers, one with two workers, start before the first test: minutes on a loaded host.
pytestmark = [pytest.mark.replicas, pytest.mark.faults, pytest.mark.timeout(300)]

# Reads routed while the replica is paused must still count as "within lag" for these
# tests (the lag limit itself is tested in tests/sessionwise/replicas); the monitor checks
# every 0.1 s so that a stopped or recovered replica is seen at once.
_REPLICA_ENV = {
    "TASKYARD_DATABASE__REPLICA_MAX_LAG": "60",
    "TASKYARD_DATABASE__REPLICA_CHECK_INTERVAL": "0.1",
}
_FRESH_CONNECTION = httpx.Limits(max_keepalive_connections=0)  # any worker may answer


@dataclass
class Servers:
    pair: Replicated
    a: ServedApp  # --workers 2
    b: ServedApp
    owner: User
    member: User

    def client(self, app: ServedApp, user: User) -> httpx.AsyncClient:
        return app.client(user, limits=_FRESH_CONNECTION, timeout=10)


async def _admin(primary_url: str) -> Database:
    # The primary alone, in-process: what `taskyard users create` / `keys revoke` run, without
    # a process start (and its imports) per command.
    return create_database(Settings(database_url=primary_url))


async def _new_user(primary_url: str, name: str) -> User:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.test"
    async with await _admin(primary_url) as db, db.session() as session:
        _, issued = await UserService(session).create_user(UserCreate(email=email, name=name))
    return User(email, name, issued.api_key)


@pytest.fixture(scope="module")
async def servers(
    replicated: Replicated, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Servers]:
    workdir: Path = tmp_path_factory.mktemp("replicas")
    with replicated_database(replicated) as name:
        primary_url, replica_url = replicated.urls(name)
        async with await _admin(primary_url) as db:
            await upgrade(db)
        users = [await _new_user(primary_url, "owner"), await _new_user(primary_url, "member")]
        env = {**_REPLICA_ENV, "TASKYARD_DATABASE__REPLICA_URLS": json.dumps([replica_url])}
        serve = functools.partial(serve_taskyard, primary_url, workdir, env=env, users=users)
        with (
            serve(extra_args=("--no-migrate", "--workers", "2")) as a,
            serve(extra_args=("--no-migrate",)) as b,
        ):
            yield Servers(replicated, a, b, *users)


@pytest.fixture(autouse=True)
def streaming(servers: Servers) -> Iterator[None]:
    servers.pair.ensure_streaming()
    yield
    servers.pair.ensure_streaming()


async def _project_with_member(servers: Servers, tasks: int = 0) -> tuple[int, list[int]]:
    async with servers.client(servers.a, servers.owner) as owner:
        created = await owner.post("/api/v1/projects", json={"name": "replicated"})
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        added = await owner.post(
            f"/api/v1/projects/{project_id}/members", json={"email": servers.member.email}
        )
        assert added.status_code == 201, added.text
        task_ids = []
        for number in range(tasks):
            task = await owner.post(
                "/api/v1/tasks", json={"project_id": project_id, "title": f"task {number}"}
            )
            assert task.status_code == 201, task.text
            task_ids.append(task.json()["id"])
    return project_id, task_ids


async def _replica_caught_up(servers: Servers) -> None:
    servers.pair.wait_replayed()
    await anyio.sleep(0.5)  # a few monitor checks, in every worker


def _selects(servers: Servers, pattern: str) -> tuple[int, int]:
    """(on the primary, on the replica): taskyard's statements matching *pattern*."""
    return (
        statement_count(servers.pair.primary, "taskyard", pattern),
        statement_count(servers.pair.replica, "taskyard", pattern),
    )


_DATA = r"^SELECT\b(?!.*\bapi_keys\b).*\b(tasks|projects)\b"  # a GET's reads, not the lookup
_KEY_LOOKUP = r"^SELECT\b.*\bapi_keys\b"


async def test_reads_of_keys_that_did_not_just_write_run_on_the_replica(
    servers: Servers,
) -> None:
    project_id, task_ids = await _project_with_member(servers, tasks=5)
    await _replica_caught_up(servers)
    data_before, lookups_before = _selects(servers, _DATA), _selects(servers, _KEY_LOOKUP)

    paths = [
        "/api/v1/tasks",
        f"/api/v1/tasks?project_id={project_id}",
        *(f"/api/v1/tasks/{task_id}" for task_id in task_ids),
        "/api/v1/projects",
        f"/api/v1/projects/{project_id}",
    ]
    requests = 0
    for app in (servers.a, servers.b):
        for user in (servers.owner, servers.member):
            async with servers.client(app, user) as client:
                for _ in range(3):
                    for path in paths:
                        response = await client.get(path)
                        assert response.status_code == 200, (path, response.text)
                        requests += 1

    data_after, lookups_after = _selects(servers, _DATA), _selects(servers, _KEY_LOOKUP)
    on_primary = data_after[0] - data_before[0]
    on_replica = data_after[1] - data_before[1]
    assert on_replica >= requests  # every GET reads at least once
    assert on_replica / (on_primary + on_replica) >= 0.9
    # The key lookup of every request ran on the primary (point 3), none on the replica.
    assert lookups_after[0] - lookups_before[0] == requests
    assert lookups_after[1] == lookups_before[1]


async def test_a_keys_writes_are_visible_to_its_next_read_in_any_process(
    servers: Servers,
) -> None:
    project_id, _ = await _project_with_member(servers)
    await _replica_caught_up(servers)
    servers.pair.replica.pause_replay()

    async with (
        servers.client(servers.a, servers.owner) as owner_a,
        servers.client(servers.b, servers.owner) as owner_b,
        servers.client(servers.b, servers.member) as member_b,
    ):
        for number in range(6):
            writer, reader = (owner_a, owner_b) if number % 2 == 0 else (owner_b, owner_a)
            created = await writer.post(
                "/api/v1/tasks", json={"project_id": project_id, "title": f"new {number}"}
            )
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            for client in (reader, writer):  # the other process, and any worker of A
                read = await client.get(f"/api/v1/tasks/{task_id}")
                assert read.status_code == 200, read.text
                assert read.json()["title"] == f"new {number}"

            patched = await reader.patch(f"/api/v1/tasks/{task_id}", json={"title": "patched"})
            assert patched.status_code == 200, patched.text
            for client in (writer, reader):
                read = await client.get(f"/api/v1/tasks/{task_id}")
                assert read.json()["title"] == "patched"
                listed = await client.get(f"/api/v1/tasks?project_id={project_id}")
                assert task_id in {task["id"] for task in listed.json()["items"]}

        # Another key reads from the paused replica: the old state (so the replica served).
        stale = await member_b.get(f"/api/v1/tasks/{task_id}")
        assert stale.status_code == 404


async def test_revoked_keys_and_removed_members_lose_access_at_once(servers: Servers) -> None:
    project_id, task_ids = await _project_with_member(servers, tasks=1)
    async with await _admin(servers.a.database_url) as db, db.session() as session:
        extra_key = (await UserService(session).create_key(servers.owner.email)).api_key
    revoked = User(servers.owner.email, servers.owner.name, extra_key)
    async with servers.client(servers.b, servers.member) as member:
        assert (await member.get(f"/api/v1/projects/{project_id}")).status_code == 200
    await _replica_caught_up(servers)
    async with servers.client(servers.b, revoked) as client:
        assert (await client.get("/api/v1/projects")).status_code == 200
    servers.pair.replica.pause_replay()

    async with await _admin(servers.a.database_url) as db, db.session() as session:
        await UserService(session).revoke_key(extra_key)  # what `taskyard keys revoke` runs
    for app in (servers.a, servers.b):
        async with servers.client(app, revoked) as client:
            for path in ("/api/v1/projects", f"/api/v1/tasks/{task_ids[0]}"):
                assert (await client.get(path)).status_code == 401

    async with servers.client(servers.a, servers.owner) as owner:
        removed = await owner.request(
            "DELETE",
            f"/api/v1/projects/{project_id}/members",
            json={"email": servers.member.email},
        )
        assert removed.status_code == 204, removed.text
    for app in (servers.b, servers.a):
        async with servers.client(app, servers.member) as member:
            assert (await member.get(f"/api/v1/projects/{project_id}")).status_code == 404
            assert (await member.get(f"/api/v1/tasks/{task_ids[0]}")).status_code == 404
            listed = await member.get(f"/api/v1/tasks?project_id={project_id}")
            assert listed.status_code == 404  # "not your project"
            everything = await member.get("/api/v1/tasks")
            assert task_ids[0] not in {task["id"] for task in everything.json()["items"]}
            projects = await member.get("/api/v1/projects")
            assert project_id not in {project["id"] for project in projects.json()["items"]}


@dataclass
class _Answer:
    sent: float
    took: float
    status: int
    retry_after: str | None


async def test_a_stopped_replica_is_skipped_and_used_again_when_it_recovers(
    servers: Servers,
) -> None:
    project_id, task_ids = await _project_with_member(servers, tasks=2)
    await _replica_caught_up(servers)
    answers: list[_Answer] = []
    stop_at = float("inf")
    running = True

    async def read_forever(client: httpx.AsyncClient) -> None:
        paths = [f"/api/v1/tasks/{task_ids[0]}", f"/api/v1/tasks?project_id={project_id}"]
        while running:
            for path in paths:
                sent = time.monotonic()
                response = await client.get(path)
                answers.append(
                    _Answer(
                        sent,
                        time.monotonic() - sent,
                        response.status_code,
                        response.headers.get("Retry-After"),
                    )
                )

    async with anyio.create_task_group() as group:
        clients = [servers.client(app, servers.member) for app in (servers.a, servers.b) * 2]
        for client in clients:
            await client.__aenter__()
            group.start_soon(read_forever, client)
        await anyio.sleep(1.0)
        await anyio.to_thread.run_sync(servers.pair.replica.stop)
        stop_at = time.monotonic()
        await anyio.sleep(3.0)
        running = False
    for client in clients:
        await client.__aexit__(None, None, None)

    assert not [answer for answer in answers if answer.status == 500]
    for answer in answers:
        if answer.status != 200:  # only a read in flight while the replica went away
            assert answer.status == 503, answer
            assert answer.retry_after is not None
            assert answer.sent < stop_at
    after = [answer for answer in answers if answer.sent >= stop_at]
    assert len(after) > 10
    assert all(answer.status == 200 and answer.took < 5.0 for answer in after)

    servers.pair.replica.start()
    servers.pair.wait_replayed()
    before = _selects(servers, _DATA)[1]
    async with servers.client(servers.b, servers.member) as member:
        for _ in range(40):  # every worker's monitor sees it back within a few checks
            assert (await member.get(f"/api/v1/tasks/{task_ids[0]}")).status_code == 200
            if _selects(servers, _DATA)[1] > before:
                break
            await anyio.sleep(0.1)
    assert _selects(servers, _DATA)[1] > before
