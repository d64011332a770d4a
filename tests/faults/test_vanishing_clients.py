"""Fault 2: clients that hang up mid-request, some of them while the commit is running.

Promise: a vanished client costs nothing lasting: afterwards the pool has no connection
checked out and PostgreSQL has no session of the app left ``idle in transaction`` (which would
hold locks and a connection forever); every create that was answered 2xx is stored.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import anyio
import httpx
import pytest

from tests.support.direct_sql import pg_fetch
from tests.support.load import Outcome, record
from tests.support.served_app import ServedApp
from tests.support.taskyard_api import create_project, create_task, pool_status

pytestmark = pytest.mark.faults

REQUESTS = 500
CONCURRENCY = 20
SETTLE = 10.0  # seconds the server gets to finish the work of vanished clients


@pytest.mark.timeout(90)
async def test_vanished_clients_leave_no_connection_or_transaction_behind(
    served: ServedApp,
) -> None:
    rng = random.Random(5)
    async with served.client(timeout=10) as client:
        project_id = await create_project(client)
        task_ids = [(await create_task(client, project_id))["id"] for _ in range(10)]

        def create() -> tuple[str, str, dict[str, Any]]:
            return "POST", "/api/v1/tasks", {"project_id": project_id, "title": f"v-{rng.random()}"}

        def patch() -> tuple[str, str, dict[str, Any]]:
            body = {"title": f"p-{rng.random()}", "priority": rng.randint(-5, 5)}
            return "PATCH", f"/api/v1/tasks/{rng.choice(task_ids)}", body

    # Client timeouts spread log-uniformly from 1 ms to 2 s, around the real latency of a
    # write under this load, so that hang-ups land in every phase: before the body is read,
    # during the queries, during COMMIT, and after the answer was sent. One client with a
    # connection per concurrent request: a timed-out request closes its connection. The
    # latency depends on the machine and on how fast taskyard is: a burst in which too few
    # clients hung up is followed by another with timeouts a quarter as long.
    outcomes: list[Outcome] = []
    zero = time.monotonic()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def one(index: int, vanishing: httpx.AsyncClient, longest: float) -> None:
        method, path, body = create() if index % 2 == 0 else patch()
        timeout = 10 ** rng.uniform(-3, math.log10(longest))
        async with limiter:
            outcome = await record(
                lambda: vanishing.request(method, path, json=body, timeout=timeout),
                {"method": method, "path": path, "timeout": round(timeout, 4), **body},
                zero,
            )
        outcomes.append(outcome)

    longest = 2.0
    for _burst in range(3):
        async with served.client(limits=limits) as vanishing, anyio.create_task_group() as group:
            for index in range(REQUESTS):
                group.start_soon(one, index, vanishing, longest)
        if sum(1 for o in outcomes if o.status is None) >= REQUESTS // 5:
            break
        longest /= 4

    hung_up = [o for o in outcomes if o.status is None]
    answered = [o for o in outcomes if o.status is not None]
    assert len(hung_up) >= REQUESTS // 5, f"too few disconnects to test anything: {len(hung_up)}"
    server_errors = [o.describe() for o in answered if (o.status or 0) >= 500]
    assert not server_errors, "\n".join(server_errors)

    async with served.client(timeout=10) as client:
        deadline = time.monotonic() + SETTLE
        pool = await pool_status(client)
        while pool["checked_out"] and time.monotonic() < deadline:
            await anyio.sleep(0.2)
            pool = await pool_status(client)
    assert pool["checked_out"] == 0, f"connections still checked out: {pool}"

    stuck = await pg_fetch(
        served.database_url,
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE application_name = 'taskyard' AND state LIKE 'idle in transaction%'",
    )
    assert not stuck, f"sessions left idle in transaction: {[dict(row) for row in stuck]}"

    created = {
        o.body["id"]: o.sent["title"]
        for o in answered
        if o.sent["method"] == "POST" and o.status == 201
    }
    rows = await pg_fetch(
        served.database_url, "SELECT id, title FROM tasks WHERE project_id = $1", project_id
    )
    stored = {row["id"]: row["title"] for row in rows}
    lost = {key: title for key, title in created.items() if stored.get(key) != title}
    assert not lost, f"2xx creates missing from the database: {lost}"
    print(f"{len(hung_up)} hung up, {len(answered)} answered")
    log = served.log()
    assert "Traceback" not in log, f"the server logged an error for a vanished client:\n{log}"
