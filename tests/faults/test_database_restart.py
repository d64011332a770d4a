"""Fault 1: PostgreSQL restarts while a client creates tasks at a steady rate.

Promise: during the outage the service answers 503 with Retry-After (never a 500, never a
hang beyond the pool timeout); within 5 s of the database being back it answers 2xx again,
without restarting the app; every create it answered 2xx is stored.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.faults.conftest import Template, serve_clone
from tests.support.direct_sql import pg_fetch
from tests.support.load import steady_load
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
