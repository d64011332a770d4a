"""Fault 6: SIGTERM while requests are in the middle of their transactions.

The test makes the requests' progress deterministic: another connection holds SHARE locks on
``tasks`` and ``project_members``, so every write request stops inside its transaction, after
part of its work (a project create has inserted the project, not yet its owner's membership; a
PATCH holds its row lock, not yet its UPDATE). Then the server gets SIGTERM.

Promise: each request completes or is rolled back whole: a 2xx is stored in full, anything
else leaves no trace (no project without its owner, no half-applied PATCH); the process exits
within its grace period (``taskyard serve --graceful-timeout``, default 10 s).

* ``released``: the locks go away 1 s after SIGTERM, inside the grace period: every in-flight
  request must finish with 2xx and be stored.
* ``held``: the locks outlive the grace period: uvicorn cancels the requests, which must roll
  back; the process must still exit on time.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest

from tests.faults.conftest import UNBOUNDED_LOCK_WAITS, Template, serve_clone
from tests.support.direct_sql import asyncpg_dsn, pg_fetch
from tests.support.load import Outcome, record
from tests.support.postgres_cluster import PostgresCluster
from tests.support.taskyard_api import create_project, create_task

pytestmark = pytest.mark.faults

GRACE = 3  # seconds: taskyard serve --graceful-timeout
EXIT_MARGIN = 3.0  # seconds for lifespan shutdown and interpreter exit beyond the grace period
PER_KIND = 3  # in-flight requests of each kind


async def _wait_until_blocked(url: str, count: int) -> None:
    deadline = time.monotonic() + 10
    blocked = 0
    while time.monotonic() < deadline:
        rows = await pg_fetch(
            url,
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE application_name = 'taskyard' AND wait_event_type = 'Lock'",
        )
        blocked = rows[0]["n"]
        if blocked == count:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"{blocked} of {count} requests reached the lock")


def _wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("locks", ["released", "held"])
async def test_sigterm_completes_or_rolls_back_in_flight_requests(
    locks: str, cluster: PostgresCluster, template: Template, tmp_path: Path
) -> None:
    args = ("--graceful-timeout", str(GRACE))
    env = UNBOUNDED_LOCK_WAITS  # the writes stay blocked until the test releases the locks
    with serve_clone(cluster, template, tmp_path, env=env, extra_args=args) as app:
        url = app.database_url
        async with app.client(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
            project_id = await create_project(client)
            before = [await create_task(client, project_id, title=f"old-{i}") for i in range(3)]

            locker = await asyncpg.connect(asyncpg_dsn(url))
            transaction = locker.transaction()
            await transaction.start()
            lock_held = True
            await locker.execute("LOCK TABLE tasks, project_members IN SHARE MODE")

            zero = time.monotonic()
            outcomes: list[Outcome] = []

            async def send(method: str, path: str, body: dict[str, Any]) -> None:
                outcome = await record(
                    lambda: client.request(method, path, json=body),
                    {"method": method, "path": path, **body},
                    zero,
                )
                outcomes.append(outcome)

            exit_code: int | None = None
            exit_seconds = 0.0
            try:
                async with anyio.create_task_group() as group:
                    for i in range(PER_KIND):
                        group.start_soon(send, "POST", "/api/v1/projects", {"name": f"new-{i}"})
                        group.start_soon(
                            send,
                            "POST",
                            "/api/v1/tasks",
                            {"project_id": project_id, "title": f"new-{i}"},
                        )
                        group.start_soon(
                            send,
                            "PATCH",
                            f"/api/v1/tasks/{before[i]['id']}",
                            {"title": f"patched-{i}", "priority": 7},
                        )
                    await _wait_until_blocked(url, 3 * PER_KIND)

                    app.process.send_signal(signal.SIGTERM)
                    terminated = time.monotonic()
                    if locks == "released":
                        await anyio.sleep(1.0)
                        await transaction.rollback()
                        lock_held = False
                    exit_code = await anyio.to_thread.run_sync(
                        _wait_for_exit, app.process, GRACE + EXIT_MARGIN
                    )
                    exit_seconds = time.monotonic() - terminated
            finally:
                if lock_held:  # the "held" case, or a failure above
                    await transaction.rollback()
                await locker.close()

        log = app.log()
        projects = await pg_fetch(
            url,
            "SELECT p.name, count(m.user_id) AS members FROM projects p "
            "LEFT JOIN project_members m ON m.project_id = p.id "
            "WHERE p.name LIKE 'new-%' GROUP BY p.name",
        )
        tasks = await pg_fetch(url, "SELECT id, title, priority, version FROM tasks")

    report = "\n".join(o.describe() for o in outcomes) + f"\n--- server log ---\n{log}"
    print(report)
    assert exit_code is not None, f"still running {GRACE + EXIT_MARGIN}s after SIGTERM\n{report}"
    assert exit_code in (0, -signal.SIGTERM), report
    assert exit_seconds <= GRACE + EXIT_MARGIN
    assert "Finished server process" in log

    succeeded = [o for o in outcomes if o.status is not None and 200 <= o.status < 300]
    if locks == "released":
        assert len(succeeded) == 3 * PER_KIND, f"in-flight requests did not finish:\n{report}"
    else:
        assert not succeeded, f"a request committed while its lock was held:\n{report}"

    stored_projects = {row["name"]: row["members"] for row in projects}
    assert all(members == 1 for members in stored_projects.values()), stored_projects
    by_id = {row["id"]: row for row in tasks}
    stored_titles = {row["title"] for row in tasks}
    for outcome in outcomes:
        ok = outcome in succeeded
        if outcome.sent["path"] == "/api/v1/projects":
            assert (outcome.sent["name"] in stored_projects) == ok, report
        elif outcome.sent["method"] == "POST":
            assert (outcome.sent["title"] in stored_titles) == ok, report
        else:
            task_id = int(outcome.sent["path"].rsplit("/", 1)[1])
            old = next(task for task in before if task["id"] == task_id)
            row = by_id[task_id]
            expected = (
                (outcome.sent["title"], 7, old["version"] + 1)
                if ok
                else (old["title"], old["priority"], old["version"])
            )
            assert (row["title"], row["priority"], row["version"]) == expected, report
