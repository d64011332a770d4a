"""Issue 12, point 5: failover on a real engine, a Patroni cluster with a synchronous standby.

taskyard runs on the cluster's multi-host URL (``?host=pg0&host=pg1&target_session_attrs=
read-write``) under a steady load of creates and reads; the primary's postmaster gets SIGKILL.
Promises: while there is no primary the service answers 503 with Retry-After, never a 500
and never a hang; within 15 s of the kill it answers 2xx again, without a restart; every
create it answered 2xx is on the new primary. When the old primary comes back as a standby,
no session is handed a connection to it (its backends never run a statement for taskyard),
and nothing ever answers 25006.

The cluster (cluster/patroni.py: etcd, two nodes, ttl 10 s, loop_wait 1 s,
``primary_start_timeout: 0``) is started once for this module, about 15 s.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cluster.patroni import PatroniCluster, PatroniNode, running_patroni_cluster
from sessionwise import Database, Failure, classify
from tests.support.direct_sql import pg_fetch
from tests.support.load import Outcome, steady_load
from tests.support.served_app import serve_taskyard
from tests.support.taskyard_api import create_project
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.patroni]

Body = dict[str, Any]
DATABASE = "taskyard"
POOL_TIMEOUT = 2.0
CREATE_RATE = 20  # creates per second
READ_RATE = 10  # reads per second
LOAD_BEFORE = 2.5  # seconds of load before the kill
RECOVERY = 15.0  # the promise: 2xx again within this many seconds of the kill
LOAD_AFTER = 3.0  # seconds of load after the old primary is back and the promise is due
# Slowest acceptable answer: a connection wait (pool_timeout) plus a statement bounded by
# taskyard's statement_timeout (4 s), which also bounds a COMMIT waiting for its standby.
SLOWEST = POOL_TIMEOUT + 4.0 + 1.0


@pytest.fixture(scope="module")
def patroni() -> Iterator[PatroniCluster]:
    if not (Path("/usr/bin/patroni").exists() and Path("/usr/bin/etcd").exists()):
        pytest.fail("patroni and etcd are not installed: run `make system-deps`")
    root = Path(tempfile.mkdtemp(prefix="tyf-pat-"))
    with running_patroni_cluster(root) as cluster:
        primary = cluster.primary()
        assert primary is not None
        anyio.run(_create_database, cluster, primary)
        yield cluster
    shutil.rmtree(root, ignore_errors=True)


async def _create_database(cluster: PatroniCluster, primary: PatroniNode) -> None:
    connection = await asyncpg.connect(primary.dsn(), timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()
    for node in cluster.nodes:  # replayed on the standby too before any test starts
        await wait_until(lambda node=node: _database_exists(node), within=30)


async def _database_exists(node: PatroniNode) -> bool:
    try:
        connection = await asyncpg.connect(node.dsn(DATABASE), timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _taskyard_backends_that_ran_sql(node: PatroniNode) -> int | None:
    """taskyard's backends on *node* that ran a statement; None while it refuses connections.

    asyncpg's target_session_attrs check opens a connection to each host in turn and closes
    the ones that do not accept writes without running anything (the server reports
    ``in_hot_standby`` and ``default_transaction_read_only`` at startup): those show an
    empty ``query``. A connection any session was handed runs statements.
    """
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        connection = await asyncpg.connect(node.dsn(DATABASE), timeout=1)
        try:
            count = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'taskyard' AND query <> ''"
            )
            return int(count)
        finally:
            await connection.close()
    return None


async def test_a_database_on_a_standby_hands_out_no_connection_for_writes(
    patroni: PatroniCluster,
) -> None:
    # A single-host URL that leads to a standby (as a VIP or DNS name can, after a
    # failover): its connections are refused before any session gets one, as unavailable.
    standby = next(node for node in patroni.nodes if node.is_streaming_standby())
    async with Database(standby.url(DATABASE), pool_timeout=POOL_TIMEOUT) as db:
        with pytest.raises(OperationalError) as raised:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
        assert classify(raised.value) is Failure.UNAVAILABLE  # 503 with Retry-After
        assert "target_session_attrs" in str(raised.value)


async def test_hosts_listed_without_target_session_attrs_still_lead_to_the_primary(
    patroni: PatroniCluster,
) -> None:
    # The standby first, and no target_session_attrs: the primary's pools ask for a primary
    # themselves, so asyncpg passes over the standby to the next host.
    standby = next(node for node in patroni.nodes if node.is_streaming_standby())
    primary = patroni.primary()
    assert primary is not None
    url = f"postgresql+asyncpg://postgres@/{DATABASE}?host={standby.address}&host={primary.address}"
    async with Database(url, read_sessions="autocommit") as db:
        async with db.session() as session:
            assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False


@pytest.mark.timeout(120)
async def test_creates_and_reads_fail_over_when_the_primary_crashes(
    patroni: PatroniCluster, tmp_path: Path
) -> None:
    old = patroni.primary()
    assert old is not None, patroni.logs()
    env = {"TASKYARD_DATABASE__POOL_TIMEOUT": str(POOL_TIMEOUT)}
    marks: dict[str, float] = {}
    seen_on_old: list[int] = []
    with serve_taskyard(patroni.multi_host_url(DATABASE), tmp_path, env=env) as app:
        limits = httpx.Limits(max_connections=200)
        async with app.client(timeout=30, limits=limits) as client:
            project_id = await create_project(client)
            zero = time.monotonic()

            def create(index: int) -> tuple[Callable[[], Awaitable[httpx.Response]], Body]:
                body: Body = {"project_id": project_id, "title": f"failover-{index:04d}"}
                return (lambda: client.post("/api/v1/tasks", json=body)), body

            def read(index: int) -> tuple[Callable[[], Awaitable[httpx.Response]], Body]:
                return (lambda: client.get(f"/api/v1/projects/{project_id}")), {"read": index}

            def keep_going() -> bool:
                now = time.monotonic() - zero
                done = "rejoined" in marks and now >= marks["kill"] + RECOVERY
                if done and "done" not in marks:
                    marks["done"] = now
                return "done" not in marks or now < marks["done"] + LOAD_AFTER

            async def crash_the_primary() -> None:
                await anyio.sleep(LOAD_BEFORE)
                old.kill_postmaster()
                marks["kill"] = time.monotonic() - zero
                promoted: list[PatroniNode] = []

                def a_new_primary() -> bool:
                    found = patroni.primary()
                    if found is None or found is old:
                        return False
                    promoted.append(found)
                    return True

                await wait_until(lambda: anyio.to_thread.run_sync(a_new_primary), within=60)
                marks["promoted"] = time.monotonic() - zero
                marks["new"] = patroni.nodes.index(promoted[0])
                await wait_until(
                    lambda: anyio.to_thread.run_sync(old.is_streaming_standby), within=60
                )
                marks["rejoined"] = time.monotonic() - zero

            async def watch_the_old_primary() -> None:
                while "done" not in marks or time.monotonic() - zero < marks["done"] + LOAD_AFTER:
                    if "kill" in marks:
                        found = await _taskyard_backends_that_ran_sql(old)
                        if found is not None:
                            seen_on_old.append(found)
                    await anyio.sleep(0.25)

            reads: list[Outcome] = []

            async def read_load() -> None:
                reads.extend(await steady_load(read, READ_RATE, keep_going, zero))

            async with anyio.create_task_group() as group:
                group.start_soon(crash_the_primary)
                group.start_soon(watch_the_old_primary)
                group.start_soon(read_load)
                creates = await steady_load(create, CREATE_RATE, keep_going, zero)

        assert app.running(), "the app process exited: failover must need no restart"
        log = app.log()
    new = patroni.nodes[int(marks["new"])]
    rows = await pg_fetch(
        new.url(DATABASE), "SELECT id, title FROM tasks WHERE project_id = $1", project_id
    )

    outcomes = sorted(creates + reads, key=lambda outcome: outcome.started)
    timeline = f"marks={marks}\n" + "\n".join(o.describe() for o in outcomes if o.status != 201)
    print(timeline)
    print(f"creates={Counter(o.status for o in creates)} reads={Counter(o.status for o in reads)}")
    kill = marks["kill"]

    unanswered = [o for o in outcomes if o.status is None]
    assert not unanswered, f"requests without an HTTP answer:\n{timeline}"
    assert not [o for o in creates if o.status not in (201, 503)], f"{timeline}\n{log[-6000:]}"
    assert not [o for o in reads if o.status not in (200, 503)], f"{timeline}\n{log[-6000:]}"
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, f"no request saw the failover; the fault was not injected:\n{timeline}"
    assert all("retry-after" in o.headers for o in unavailable), timeline
    assert all(o.body["type"] == "/problems/service-unavailable" for o in unavailable)
    slow = [o for o in outcomes if o.seconds > SLOWEST]
    assert not slow, f"answers slower than {SLOWEST}s:\n{timeline}"
    # 503 only while there was no primary: nothing failed after the promotion plus one
    # connection wait (a request may have queued for the pool just before it).
    late = [o for o in unavailable if o.started > marks["promoted"] + POOL_TIMEOUT + 1.0]
    assert not late, f"503s after the new primary was up:\n{timeline}"
    for kind, done in (("create", creates), ("read", reads)):
        recovered = [o for o in done if o.status in (200, 201) and o.started >= kill]
        assert recovered, f"no {kind} succeeded after the kill:\n{timeline}"
        assert recovered[0].started <= kill + RECOVERY, f"{kind}s recovered too late:\n{timeline}"

    created = {o.body["id"]: o.sent["title"] for o in creates if o.status == 201}
    stored = {row["id"]: row["title"] for row in rows}
    lost = {task_id: title for task_id, title in created.items() if stored.get(task_id) != title}
    assert not lost, f"2xx creates missing from the new primary: {lost}\n{timeline}"

    assert seen_on_old, "the old primary never came back to be watched"
    assert max(seen_on_old) == 0, f"sessions ran on the demoted primary: {seen_on_old}"
    assert "25006" not in log, log[-6000:]
