"""The queue through the API, on both backends: payloads and results, complete and fail by
the lease holder, the attempt ladder to a dead task and back, lease expiry as an attempt,
scheduled work, and batch claims.

Backoff delays are never waited for: the app's default policy (first retry within 10 s) is
checked on ``run_after``, which the tests then move into the past.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from sessionwise import Database
from taskyard.tasks.models import Task
from taskyard.tasks.schemas import MAX_JSON_BYTES
from taskyard.timestamps import utc_now
from tests.taskyard.conftest import Actor

API = "/api/v1"
PAYLOAD: dict[str, Any] = {"repo": "acme/site", "files": ["a.py", "b.py"], "depth": 2, "ok": True}


class Queue:
    """One project with two workers, driven through the API as its owner."""

    def __init__(self, client: httpx.AsyncClient, owner: Actor) -> None:
        self.client, self.owner = client, owner
        self.project_id = 0
        self.workers: list[int] = []

    async def setup(self, **project: Any) -> Queue:
        created = await self.post("/projects", {"name": "agents", **project})
        assert created.status_code == 201, created.text
        self.project_id = created.json()["id"]
        for name in ("w1", "w2"):
            worker = await self.post("/workers", {"project_id": self.project_id, "name": name})
            self.workers.append(worker.json()["id"])
        return self

    async def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return await self.client.post(
            f"{API}{path}", json=body, headers={**self.owner.headers, **headers}
        )

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(f"{API}{path}", params=params, headers=self.owner.headers)

    async def create(self, **fields: Any) -> dict[str, Any]:
        response = await self.post(
            "/tasks", {"project_id": self.project_id, "title": "t", **fields}
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    async def claim(self, worker: int = 0, **fields: Any) -> httpx.Response:
        body = {"worker_id": self.workers[worker], "lease_seconds": 60, **fields}
        return await self.post("/tasks/claim", body)

    async def fail(self, task_id: int, error: str, worker: int = 0) -> httpx.Response:
        body = {"worker_id": self.workers[worker], "error": error}
        return await self.post(f"/tasks/{task_id}/fail", body)


@pytest.fixture
async def queue(api_client: httpx.AsyncClient, alice: Actor) -> Queue:
    return await Queue(api_client, alice).setup()


async def _move(db: Database, task_id: int, **values: Any) -> None:
    """Set columns directly: a backoff or a lease that has run out, without waiting."""
    async with db.session() as session:
        await session.exec(update(Task).where(col(Task.id) == task_id).values(**values))


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_payload_and_result_round_trip(queue: Queue) -> None:
    created = await queue.create(payload=PAYLOAD)
    assert created["payload"] == PAYLOAD
    assert created["result"] is None
    assert created["attempts"] == 0
    assert created["max_attempts"] == 3  # the project's default
    assert (await queue.get(f"/tasks/{created['id']}")).json()["payload"] == PAYLOAD

    claimed = (await queue.claim()).json()
    assert claimed["payload"] == PAYLOAD
    assert claimed["attempts"] == 1
    result = {"summary": "done", "changed": 2, "nested": [{"ü": None}]}
    completed = await queue.post(
        f"/tasks/{created['id']}/complete", {"worker_id": queue.workers[0], "result": result}
    )
    assert completed.status_code == 200, completed.text
    body = completed.json()
    assert (body["status"], body["result"], body["lease_expires_at"]) == ("done", result, None)
    assert completed.headers["etag"] == f'"{body["version"]}"'
    assert (await queue.get(f"/tasks/{created['id']}")).json() == body

    # Any JSON value is a payload; none at all is null.
    for value in ([1, "two", 3.5], "text", 7, False):
        assert (await queue.create(payload=value))["payload"] == value
    assert (await queue.create())["payload"] is None


async def test_payload_size_limit_and_validation(queue: Queue) -> None:
    just_fits = {"blob": "x" * (MAX_JSON_BYTES - len('{"blob":""}'))}
    assert (await queue.create(payload=just_fits))["payload"] == just_fits

    too_big = await queue.post(
        "/tasks",
        {"project_id": queue.project_id, "title": "big", "payload": {"blob": "x" * MAX_JSON_BYTES}},
    )
    assert too_big.status_code == 422
    problem = too_big.json()
    assert problem["type"] == "/problems/validation-error"
    assert [error["field"] for error in problem["errors"]] == ["payload"]
    assert f"larger than {MAX_JSON_BYTES} bytes" in problem["errors"][0]["message"]

    # Over the whole request limit: refused before it is read.
    huge = await queue.post(
        "/tasks", {"project_id": queue.project_id, "title": "huge", "payload": "x" * 2**21}
    )
    assert huge.status_code == 413
    assert huge.json()["type"] == "/problems/payload-too-large"

    # Not JSON at all: the body is refused as malformed.
    malformed = await queue.client.post(
        f"{API}/tasks",
        content=b'{"project_id": 1, "title": "t", "payload": {nope}}',
        headers={**queue.owner.headers, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "/problems/malformed-json"

    # What Python's parser takes but JSON columns and clients cannot: refused, stored nowhere.
    for value in ("NaN", "Infinity", "-1e400", '"\\ud800"', '{"a": [1, NaN]}'):
        odd = await queue.client.post(
            f"{API}/tasks",
            content=f'{{"project_id": {queue.project_id}, "title": "t", "payload": {value}}}',
            headers={**queue.owner.headers, "Content-Type": "application/json"},
        )
        assert odd.status_code == 422, (value, odd.text)
        assert odd.json()["errors"][0]["field"] == "payload"

    # A result is held to the same limit; the task stays in progress.
    task = (await queue.claim()).json()
    refused = await queue.post(
        f"/tasks/{task['id']}/complete",
        {"worker_id": queue.workers[0], "result": ["x" * MAX_JSON_BYTES]},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "result"
    assert (await queue.get(f"/tasks/{task['id']}")).json()["status"] == "in_progress"
    tasks = (await queue.get("/tasks", project_id=queue.project_id)).json()["items"]
    assert [t["title"] for t in tasks] == ["t"]  # none of the refused tasks was stored


async def test_complete_and_fail_by_another_worker_or_after_the_lease_is_lost(
    queue: Queue, isolated_db: Database
) -> None:
    task = await queue.create()
    assert (await queue.claim(0)).json()["id"] == task["id"]
    path = f"/tasks/{task['id']}"
    for action, body in (("complete", {"result": 1}), ("fail", {"error": "nope"})):
        wrong = await queue.post(f"{path}/{action}", {"worker_id": queue.workers[1], **body})
        assert wrong.status_code == 409, wrong.text
        assert wrong.json()["type"] == "/problems/conflict"
        assert wrong.headers["content-type"] == "application/problem+json"
    unchanged = (await queue.get(path)).json()
    assert (unchanged["status"], unchanged["version"], unchanged["attempts"]) == (
        "in_progress",
        task["version"] + 1,
        1,
    )

    # The lease runs out and another worker's claim takes the task back: the first worker's
    # complete and fail are refused, the second one's complete is taken.
    await _move(isolated_db, task["id"], lease_expires_at=utc_now() - timedelta(seconds=1))
    retaken = await queue.claim(1)
    assert retaken.status_code == 204  # the expiry's backoff: not due yet
    await _move(isolated_db, task["id"], run_after=utc_now() - timedelta(seconds=1))
    assert (await queue.claim(1)).json()["id"] == task["id"]
    lost = await queue.post(f"{path}/complete", {"worker_id": queue.workers[0], "result": 1})
    assert lost.status_code == 409
    assert (await queue.fail(task["id"], "late", worker=0)).status_code == 409
    done = await queue.post(f"{path}/complete", {"worker_id": queue.workers[1], "result": 2})
    assert done.json()["status"] == "done"
    again = await queue.post(f"{path}/complete", {"worker_id": queue.workers[1], "result": 3})
    assert again.status_code == 409  # done is done
    assert (await queue.get(path)).json()["result"] == 2

    # Unknown or invisible tasks are 404, as everywhere.
    missing = await queue.post("/tasks/999999/complete", {"worker_id": queue.workers[0]})
    assert missing.status_code == 404


async def test_the_attempt_ladder_ends_dead_with_every_error_kept(
    queue: Queue, isolated_db: Database
) -> None:
    task = await queue.create(payload={"n": 1})
    task_id, errors = task["id"], ["timeout talking to the model", "tool crashed", "bad output"]
    statuses = []
    for attempt, error in enumerate(errors, start=1):
        claimed = await queue.claim()
        assert claimed.status_code == 200, claimed.text
        assert (claimed.json()["id"], claimed.json()["attempts"]) == (task_id, attempt)
        before = utc_now()
        failed = await queue.fail(task_id, error)
        assert failed.status_code == 200, failed.text
        body = failed.json()
        statuses.append(body["status"])
        assert body["last_error"] == error
        assert body["lease_expires_at"] is None
        if body["status"] == "pending":
            # Exponential backoff with jitter: 10 s * 2 ** (n - 1), less up to half of it.
            delay = (_when(body["run_after"]) - before).total_seconds()
            full = 10 * 2 ** (attempt - 1)
            assert full / 2 - 1 <= delay <= full + 1, delay
            assert (await queue.claim()).status_code == 204  # not due yet
            await _move(isolated_db, task_id, run_after=utc_now() - timedelta(seconds=1))
    assert statuses == ["pending", "pending", "dead"]
    assert (await queue.claim()).status_code == 204  # dead tasks are not claimed

    attempts = (await queue.get(f"/tasks/{task_id}/attempts")).json()
    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (n, "failed", error) for n, error in enumerate(errors, start=1)
    ]
    assert all(a["worker"] == {"id": queue.workers[0], "name": "w1"} for a in attempts)
    assert all(_when(a["started_at"]) <= _when(a["ended_at"]) for a in attempts)

    dead = (await queue.get("/tasks", project_id=queue.project_id, status="dead")).json()
    assert [t["id"] for t in dead["items"]] == [task_id]
    # A dead task is not revived by hand, only by a retry (which honours If-Match).
    revived = await queue.client.patch(
        f"{API}/tasks/{task_id}", json={"status": "pending"}, headers=queue.owner.headers
    )
    assert revived.status_code == 409
    stale = await queue.post(f"/tasks/{task_id}/retry", None, **{"If-Match": '"1"'})
    assert stale.status_code == 412
    retried = await queue.post(f"/tasks/{task_id}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    assert (await queue.claim()).json()["id"] == task_id
    assert len((await queue.get(f"/tasks/{task_id}/attempts")).json()) == 3  # history stays
    # Only dead, failed or cancelled tasks can be retried.
    assert (await queue.post(f"/tasks/{task_id}/retry")).status_code == 409


async def test_an_expired_lease_counts_an_attempt(
    api_client: httpx.AsyncClient, alice: Actor, isolated_db: Database
) -> None:
    queue = await Queue(api_client, alice).setup(max_attempts=2)
    task = await queue.create()
    assert task["max_attempts"] == 2
    first = (await queue.claim(0)).json()
    lease_end = utc_now() - timedelta(seconds=1)
    await _move(isolated_db, task["id"], lease_expires_at=lease_end)

    # The next claim takes the task back: attempt 1 expired, the task waits for its backoff.
    assert (await queue.claim(1)).status_code == 204
    back = (await queue.get(f"/tasks/{task['id']}")).json()
    assert back["status"] == "pending"
    assert back["attempts"] == 1
    assert _when(back["run_after"]) > utc_now()
    assert "lease expired" in back["last_error"]
    await _move(isolated_db, task["id"], run_after=utc_now() - timedelta(seconds=1))
    second = (await queue.claim(1)).json()
    assert (second["id"], second["attempts"]) == (task["id"], 2)

    # The last attempt's lease runs out too: dead.
    await _move(isolated_db, task["id"], lease_expires_at=utc_now() - timedelta(seconds=1))
    assert (await queue.claim(0)).status_code == 204
    assert (await queue.get(f"/tasks/{task['id']}")).json()["status"] == "dead"
    attempts = (await queue.get(f"/tasks/{task['id']}/attempts")).json()
    assert [(a["attempt"], a["outcome"], a["worker"]["id"]) for a in attempts] == [
        (1, "expired", queue.workers[0]),
        (2, "expired", queue.workers[1]),
    ]
    assert _when(attempts[0]["started_at"]) == _when(first["claimed_at"])


async def test_run_after_is_respected(queue: Queue, isolated_db: Database) -> None:
    later = (utc_now() + timedelta(hours=1)).replace(microsecond=0)
    scheduled = await queue.create(title="later", run_after=later.isoformat(), priority=9)
    assert _when(scheduled["run_after"]) == later
    now_task = await queue.create(title="now")
    # The scheduled task is better by priority but not due: the other one is claimed.
    assert (await queue.claim()).json()["id"] == now_task["id"]
    assert (await queue.claim()).status_code == 204
    assert (await queue.claim(limit=10)).json() == {"items": []}
    await _move(isolated_db, scheduled["id"], run_after=utc_now() - timedelta(seconds=1))
    assert (await queue.claim()).json()["id"] == scheduled["id"]

    # A time in the past is due at once; a time without an offset is refused.
    past = await queue.create(run_after="2020-01-01T00:00:00Z")
    assert _when(past["run_after"]) == datetime(2020, 1, 1, tzinfo=UTC)
    naive = await queue.post(
        "/tasks",
        {"project_id": queue.project_id, "title": "t", "run_after": "2030-01-01T00:00:00"},
    )
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "run_after"


async def test_batch_claims(queue: Queue) -> None:
    ids = [(await queue.create(title=f"t{n}", priority=n % 3))["id"] for n in range(7)]
    batch = await queue.claim(limit=4, lease_seconds=120)
    assert batch.status_code == 200, batch.text
    items = batch.json()["items"]
    # Best first: priority 2 (t2, t5), then priority 1 (t1, t4).
    assert [t["id"] for t in items] == [ids[2], ids[5], ids[1], ids[4]]
    for task in items:
        assert task["status"] == "in_progress"
        assert task["assignee"] == {"id": queue.workers[0], "name": "w1"}
        assert task["version"] == 2
        assert task["attempts"] == 1
        assert task["project"] == {"id": queue.project_id, "name": "agents"}
        assert (await queue.get(f"/tasks/{task['id']}")).json() == task
    rest = (await queue.claim(1, limit=100)).json()["items"]
    assert [t["id"] for t in rest] == [ids[0], ids[3], ids[6]]
    assert (await queue.claim(limit=5)).json() == {"items": []}
    for bad in (0, 101, "3", None):
        refused = await queue.claim(limit=bad)
        assert refused.status_code == 422, bad
        assert refused.json()["errors"][0]["field"] == "limit"


async def test_complete_and_fail_honour_idempotency_keys(queue: Queue) -> None:
    task = await queue.create()
    await queue.claim()
    body = {"worker_id": queue.workers[0], "result": {"ok": 1}}
    first = await queue.post(f"/tasks/{task['id']}/complete", body, **{"Idempotency-Key": '"c-1"'})
    again = await queue.post(f"/tasks/{task['id']}/complete", body, **{"Idempotency-Key": '"c-1"'})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json()

    other = await queue.create()
    await queue.claim()
    failure = {"worker_id": queue.workers[0], "error": "flaky"}
    failed = await queue.post(f"/tasks/{other['id']}/fail", failure, **{"Idempotency-Key": '"f-1"'})
    replay = await queue.post(f"/tasks/{other['id']}/fail", failure, **{"Idempotency-Key": '"f-1"'})
    assert replay.json() == failed.json()
    assert len((await queue.get(f"/tasks/{other['id']}/attempts")).json()) == 1  # counted once

    # A keyed batch claim, retried, gets the same tasks and takes no others.
    fresh = [(await queue.create())["id"] for _ in range(3)]
    claim = {"worker_id": queue.workers[1], "lease_seconds": 60, "limit": 2}
    first_claim = await queue.post("/tasks/claim", claim, **{"Idempotency-Key": '"b-1"'})
    retried = await queue.post("/tasks/claim", claim, **{"Idempotency-Key": '"b-1"'})
    assert retried.json() == first_claim.json()
    assert [t["id"] for t in retried.json()["items"]] == fresh[:2]
    assert (await queue.get(f"/tasks/{fresh[2]}")).json()["status"] == "pending"


async def test_queue_endpoints_are_for_members_only(
    queue: Queue, bob: Actor, api_client: httpx.AsyncClient
) -> None:
    task = await queue.create(payload={"secret": "s3cr3t"})
    await queue.claim()
    outsider = Queue(api_client, bob)
    for path, body in (
        (f"/tasks/{task['id']}/complete", {"worker_id": queue.workers[0]}),
        (f"/tasks/{task['id']}/fail", {"worker_id": queue.workers[0], "error": "x"}),
        (f"/tasks/{task['id']}/retry", None),
        ("/tasks/claim", {"worker_id": queue.workers[0], "limit": 5}),
    ):
        response = await outsider.post(path, body)
        assert response.status_code == 404, (path, response.text)
        assert "s3cr3t" not in response.text
    assert (await outsider.get(f"/tasks/{task['id']}/attempts")).status_code == 404
    assert (await queue.get(f"/tasks/{task['id']}")).json()["status"] == "in_progress"


async def test_a_batch_of_completions_is_all_or_nothing(queue: Queue) -> None:
    ids = [(await queue.create(title=f"t{n}"))["id"] for n in range(4)]
    claimed = (await queue.claim(0, limit=3)).json()["items"]
    assert [t["id"] for t in claimed] == ids[:3]
    other = (await queue.claim(1)).json()
    assert other["id"] == ids[3]

    # One task not held by the worker (or not found): nothing is completed.
    for foreign, status in ((ids[3], 409), (999_999, 404)):
        items = [{"id": ids[0], "result": 0}, {"id": foreign, "result": 1}]
        refused = await queue.post(
            "/tasks/complete", {"worker_id": queue.workers[0], "items": items}
        )
        assert refused.status_code == status, refused.text
        assert (await queue.get(f"/tasks/{ids[0]}")).json()["status"] == "in_progress"

    items = [{"id": ids[2], "result": {"n": 2}}, {"id": ids[0], "result": [0]}, {"id": ids[1]}]
    done = await queue.post("/tasks/complete", {"worker_id": queue.workers[0], "items": items})
    assert done.status_code == 200, done.text
    answered = done.json()["items"]
    assert [(t["id"], t["status"], t["result"]) for t in answered] == [
        (ids[2], "done", {"n": 2}),
        (ids[0], "done", [0]),
        (ids[1], "done", None),
    ]
    for task in answered:
        stored = (await queue.get(f"/tasks/{task['id']}")).json()
        assert stored == task
        assert (stored["version"], stored["lease_expires_at"]) == (3, None)
    again = await queue.post("/tasks/complete", {"worker_id": queue.workers[0], "items": items})
    assert again.status_code == 409

    for bad in ([], [{"id": ids[3]}, {"id": ids[3]}], [{"id": n} for n in range(1, 102)]):
        invalid = await queue.post("/tasks/complete", {"worker_id": queue.workers[1], "items": bad})
        assert invalid.status_code == 422, bad
    assert (
        await queue.client.get(f"{API}/tasks/complete", headers=queue.owner.headers)
    ).status_code == 405
