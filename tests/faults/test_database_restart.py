"""Fault 1: PostgreSQL restarts while a client creates tasks at a steady rate.

Promise: during the outage the service answers 503 with Retry-After (never a 500, never a
hang beyond the pool timeout); within 5 s of the database being back it answers 2xx again,
without restarting the app; every create it answered 2xx is stored.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.faults.conftest import Template, serve_clone
from tests.support.direct_sql import pg_fetch
from tests.support.load import Outcome, record, steady_load
from tests.support.postgres_cluster import PostgresCluster
from tests.support.taskyard_api import create_project

pytestmark = pytest.mark.faults

Body = dict[str, Any]

POOL_TIMEOUT = 2.0
HANG_MARGIN = 1.0  # seconds beyond pool_timeout that count as "answered promptly"
RATE = 20  # creates per second
DOWN_FOR = 2.0  # seconds the database stays stopped
LOAD_BEFORE = 2.5  # seconds of load before the stop
LOAD_AFTER = 6.0  # seconds of load after the database is back
RECOVERY = 5.0  # the promise: 2xx again within this many seconds


@pytest.mark.timeout(90)
async def test_creates_survive_a_database_restart(
    cluster: PostgresCluster, template: Template, tmp_path: Path
) -> None:
    env = {"TASKYARD_DATABASE__POOL_TIMEOUT": str(POOL_TIMEOUT)}
    with serve_clone(cluster, template, tmp_path, env=env) as app:
        async with app.client(timeout=15, limits=httpx.Limits(max_connections=100)) as client:
            project_id = await create_project(client)
            zero = time.monotonic()
            marks: dict[str, float] = {}

            def make_request(index: int) -> tuple[Callable[[], Awaitable[httpx.Response]], Body]:
                body: Body = {"project_id": project_id, "title": f"restart-{index:04d}"}
                return (lambda: client.post("/api/v1/tasks", json=body)), body

            def keep_going() -> bool:
                back = marks.get("back")
                return back is None or time.monotonic() - zero < back + LOAD_AFTER

            async def restart_database() -> None:
                await anyio.sleep(LOAD_BEFORE)
                marks["stopping"] = time.monotonic() - zero
                await anyio.to_thread.run_sync(cluster.stop)
                marks["down"] = time.monotonic() - zero
                await anyio.sleep(DOWN_FOR)
                await anyio.to_thread.run_sync(cluster.start)
                marks["back"] = time.monotonic() - zero

            async with anyio.create_task_group() as group:
                group.start_soon(restart_database)
                outcomes = await steady_load(make_request, RATE, keep_going, zero)

        assert app.running(), "the app process exited: recovery must need no restart"
        log = app.log()
        rows = await pg_fetch(
            app.database_url, "SELECT id, title FROM tasks WHERE project_id = $1", project_id
        )

    report = "\n".join(outcome.describe() for outcome in outcomes)
    timeline = f"marks={marks}\n{report}"
    back = marks["back"]
    print(timeline)  # shown by pytest when an assertion below fails

    unanswered = [o for o in outcomes if o.status is None]
    assert not unanswered, f"requests without an HTTP answer:\n{timeline}"
    unexpected = [o for o in outcomes if o.status not in (201, 503)]
    assert not unexpected, f"answers other than 201/503:\n{timeline}\n--- server log ---\n{log}"
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, f"no request saw the outage; the fault was not injected:\n{timeline}"
    assert all("retry-after" in o.headers for o in unavailable), timeline
    assert all(o.body["type"] == "/problems/service-unavailable" for o in unavailable)
    slow = [o for o in outcomes if o.seconds > POOL_TIMEOUT + HANG_MARGIN]
    assert not slow, f"answers slower than pool_timeout + {HANG_MARGIN}s:\n{timeline}"

    recovered = [o for o in outcomes if o.status == 201 and o.started >= back]
    assert recovered, f"no success after the database came back:\n{timeline}"
    assert recovered[0].started <= back + RECOVERY, f"recovery took too long:\n{timeline}"
    late_failures = [o for o in outcomes if o.started >= back + RECOVERY and o.status != 201]
    assert not late_failures, f"failures {RECOVERY}s after recovery:\n{timeline}"

    created = {o.body["id"]: o.sent["title"] for o in outcomes if o.status == 201}
    stored = {row["id"]: row["title"] for row in rows}
    lost = {task_id: title for task_id, title in created.items() if stored.get(task_id) != title}
    assert not lost, f"2xx creates missing from the database: {lost}\n{timeline}"


RETRY_FOR = 30.0  # seconds a keyed create keeps retrying before the test gives up on it


@pytest.mark.timeout(120)
async def test_keyed_creates_take_effect_once_across_a_database_restart(
    cluster: PostgresCluster, template: Template, tmp_path: Path
) -> None:
    """Issue 10: each create has its own Idempotency-Key and is retried until a 2xx.

    A create whose COMMIT reached PostgreSQL but whose answer was lost (503, or a dropped
    connection) is retried with its key: the retry gets the stored answer, so the number of
    stored tasks equals the number of keys, and every answer for a key carries one body.
    """
    env = {"TASKYARD_DATABASE__POOL_TIMEOUT": str(POOL_TIMEOUT)}
    with serve_clone(cluster, template, tmp_path, env=env) as app:
        async with app.client(timeout=15, limits=httpx.Limits(max_connections=100)) as client:
            project_id = await create_project(client)
            zero = time.monotonic()
            marks: dict[str, float] = {}
            attempts: list[Outcome] = []

            async def create_until_done(index: int) -> None:
                key = f"restart-{index:04d}-{uuid.uuid4()}"
                body: Body = {"project_id": project_id, "title": f"keyed-{index:04d}"}
                headers = {"Idempotency-Key": f'"{key}"'}
                deadline = time.monotonic() + RETRY_FOR
                while time.monotonic() < deadline:
                    outcome = await record(
                        lambda: client.post("/api/v1/tasks", json=body, headers=headers),
                        {"key": key, **body},
                        zero,
                    )
                    attempts.append(outcome)
                    if outcome.status is not None and outcome.status < 300:
                        return
                    # Retry what says "retry": 503 (outage), 409 (the first attempt with this
                    # key still running), or no answer at all (the connection was lost).
                    assert outcome.status in (None, 409, 503), outcome.describe()
                    await anyio.sleep(min(1.0, float(outcome.headers.get("retry-after", 0.2))))

            def keep_going() -> bool:
                back = marks.get("back")
                return back is None or time.monotonic() - zero < back + LOAD_AFTER

            async def restart_database() -> None:
                await anyio.sleep(LOAD_BEFORE)
                await anyio.to_thread.run_sync(cluster.stop)
                marks["down"] = time.monotonic() - zero
                await anyio.sleep(DOWN_FOR)
                await anyio.to_thread.run_sync(cluster.start)
                marks["back"] = time.monotonic() - zero

            async with anyio.create_task_group() as group:
                group.start_soon(restart_database)
                index = 0
                next_at = time.monotonic()
                while keep_going():
                    group.start_soon(create_until_done, index)
                    index += 1
                    next_at += 1 / RATE
                    await anyio.sleep(max(0.0, next_at - time.monotonic()))

        assert app.running(), "the app process exited: recovery must need no restart"
        rows = await pg_fetch(
            app.database_url, "SELECT id, title FROM tasks WHERE project_id = $1", project_id
        )

    by_key: dict[str, list[Outcome]] = {}
    for outcome in sorted(attempts, key=lambda o: o.started):
        by_key.setdefault(outcome.sent["key"], []).append(outcome)
    timeline = f"marks={marks}\n" + "\n".join(o.describe() for o in attempts if o.status != 201)
    assert any(o.status == 503 for o in attempts), f"the outage was not seen:\n{timeline}"
    answered = {key: [o for o in tried if o.status == 201] for key, tried in by_key.items()}
    unfinished = [key for key, done in answered.items() if not done]
    assert not unfinished, f"keys without a 2xx after {RETRY_FOR}s: {unfinished}\n{timeline}"

    stored = Counter(row["title"] for row in rows)
    assert len(rows) == len(by_key), f"{len(rows)} tasks stored for {len(by_key)} keys"
    assert all(count == 1 for count in stored.values()), stored.most_common(3)
    for key, done in answered.items():
        assert len({repr(o.body) for o in done}) == 1, (key, [o.body for o in done])
        assert {row["id"] for row in rows if row["title"] == done[0].sent["title"]} == {
            done[0].body["id"]
        }
    retried = [key for key, tried in by_key.items() if len(tried) > 1]
    replayed = [
        key
        for key, tried in by_key.items()
        if any(o.headers.get("idempotency-replayed") == "true" for o in tried)
    ]
    # Shown with -s (and in the failure report): the figures docs/reliability.md quotes.
    print(
        f"keys={len(by_key)} stored={len(rows)} retried={len(retried)} "
        f"replayed={len(replayed)} attempts={len(attempts)} "
        f"status={dict(Counter(o.status for o in attempts))}"
    )
