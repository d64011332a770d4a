"""Issue 10: retried requests take effect once, when the first answer was lost.

Two ways an answer gets lost, both made to happen for real:

* the COMMIT's acknowledgement: a proxy between taskyard and PostgreSQL forwards a COMMIT,
  lets PostgreSQL commit it, and drops the reply (tests/support/lost_commit_proxy.py). The app
  sees a lost connection and answers 503 although the effect is stored: the gap of the
  restart test (313 acknowledged, 317 stored), made deterministic;
* the client's connection: claimers that hang up mid-request and retry with their key.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy.engine import make_url

from tests.faults.conftest import Template, cloned_database
from tests.support.direct_sql import pg_fetch
from tests.support.load import Outcome, record
from tests.support.lost_commit_proxy import LostCommitProxy, lost_commit_proxy
from tests.support.postgres_cluster import PostgresCluster
from tests.support.served_app import ServedApp, serve_taskyard
from tests.support.taskyard_api import create_project, create_worker

pytestmark = pytest.mark.faults

API = "/api/v1"


@pytest.fixture
def proxied(
    cluster: PostgresCluster, template: Template, tmp_path: Path
) -> Iterator[tuple[ServedApp, LostCommitProxy]]:
    """taskyard on a fresh clone, connected to it through a `LostCommitProxy`."""
    with (
        cloned_database(cluster, template) as url,
        lost_commit_proxy("127.0.0.1", cluster.port) as proxy,
    ):
        through_proxy = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        with serve_taskyard(
            through_proxy, tmp_path, users=[template.owner, template.stranger]
        ) as app:
            app.database_url = url  # the checks read the database directly, not via the proxy
            yield app, proxy


def key() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


async def _titles(app: ServedApp, project_id: int) -> Counter[str]:
    rows = await pg_fetch(
        app.database_url, "SELECT title FROM tasks WHERE project_id = $1", project_id
    )
    return Counter(row["title"] for row in rows)


@pytest.mark.timeout(90)
async def test_a_create_whose_commit_answer_was_lost_is_replayed_not_repeated(
    proxied: tuple[ServedApp, LostCommitProxy],
) -> None:
    app, proxy = proxied
    async with app.client(timeout=15) as client:
        project_id = await create_project(client)

        # Without a key, the gap: a 503 for a create that was stored, and the retry repeats it.
        plain = {"project_id": project_id, "title": "without a key"}
        proxy.lose_next_commits(1)
        lost = await client.post(f"{API}/tasks", json=plain)
        assert lost.status_code == 503, lost.text
        assert proxy.lost == 1
        assert (await client.post(f"{API}/tasks", json=plain)).status_code == 201
        assert (await _titles(app, project_id))["without a key"] == 2

        keyed = {"project_id": project_id, "title": "with a key"}
        headers = key()
        proxy.lose_next_commits(1)
        lost = await client.post(f"{API}/tasks", json=keyed, headers=headers)
        assert lost.status_code == 503, lost.text
        assert proxy.lost == 2
        assert (await _titles(app, project_id))["with a key"] == 1  # stored, although a 503
        retried = await client.post(f"{API}/tasks", json=keyed, headers=headers)
        assert retried.status_code == 201, retried.text
        assert retried.headers["idempotency-replayed"] == "true"
        assert retried.headers["location"] == f"{API}/tasks/{retried.json()['id']}"
        again = await client.post(f"{API}/tasks", json=keyed, headers=headers)
        assert again.content == retried.content
        assert (await _titles(app, project_id))["with a key"] == 1


@pytest.mark.timeout(90)
async def test_a_claim_whose_commit_answer_was_lost_returns_the_same_task(
    proxied: tuple[ServedApp, LostCommitProxy],
) -> None:
    app, proxy = proxied
    async with app.client(timeout=15) as client:
        project_id = await create_project(client)
        worker_id = await create_worker(client, project_id)
        for n in range(3):
            await client.post(f"{API}/tasks", json={"project_id": project_id, "title": f"t{n}"})
        claim = {"worker_id": worker_id, "lease_seconds": 300}
        headers = key()
        proxy.lose_next_commits(1)
        lost = await client.post(f"{API}/tasks/claim", json=claim, headers=headers)
        assert lost.status_code == 503, lost.text
        retried = await client.post(f"{API}/tasks/claim", json=claim, headers=headers)
        assert retried.status_code == 200, retried.text
        assert retried.headers["idempotency-replayed"] == "true"
    claimed = await pg_fetch(
        app.database_url,
        "SELECT id FROM tasks WHERE project_id = $1 AND status = 'in_progress'",
        project_id,
    )
    assert [row["id"] for row in claimed] == [retried.json()["id"]]


CLAIMS = 40  # per burst
CONCURRENCY = 16
WORKERS = 8
RETRY_FOR = 30.0


@pytest.mark.timeout(150)
async def test_claims_retried_after_a_dropped_connection_never_take_a_second_task(
    proxied: tuple[ServedApp, LostCommitProxy],
) -> None:
    """Claimers hang up mid-request (timeouts from 1 ms up), then retry with their key.

    A first attempt the server finished (the client gone) has claimed a task: the retry must
    get that task, not a second one. Afterwards the tasks in progress are exactly the tasks
    the claimers were given, each given once.
    """
    app, _proxy = proxied
    rng = random.Random(10)
    async with app.client(timeout=15) as client:
        project_id = await create_project(client)
        workers = [await create_worker(client, project_id) for _ in range(WORKERS)]
        await pg_fetch(
            app.database_url,
            "INSERT INTO tasks (project_id, title, description, status, priority, version,"
            " created_at, updated_at) SELECT $1, 'stock-' || n, '', 'pending', n % 5, 1,"
            " now(), now() FROM generate_series(1, $2) AS n RETURNING id",
            project_id,
            CLAIMS * 6,
        )

    zero = time.monotonic()
    attempts: list[Outcome] = []
    given: dict[str, int] = {}
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def claim_until_done(index: int, longest: float) -> None:
        headers = key()
        body = {"worker_id": workers[index % WORKERS], "lease_seconds": 600}
        # The first attempt hangs up after a timeout spread log-uniformly from 1 ms to
        # *longest*; its retries wait for their answer.
        timeouts = [10 ** rng.uniform(-3, math.log10(longest))]
        deadline = time.monotonic() + RETRY_FOR
        async with limiter, app.client() as claimer:  # its own connection, to hang up on
            while time.monotonic() < deadline:
                timeout = timeouts[-1]
                outcome = await record(
                    lambda timeout=timeout: claimer.post(
                        f"{API}/tasks/claim", json=body, headers=headers, timeout=timeout
                    ),
                    {"key": headers["Idempotency-Key"], "timeout": round(timeout, 4)},
                    zero,
                )
                attempts.append(outcome)
                if outcome.status == 200:
                    given[headers["Idempotency-Key"]] = outcome.body["id"]
                    return
                assert outcome.status in (None, 409, 503), outcome.describe()
                timeouts.append(15.0)
                if outcome.status is not None:
                    await anyio.sleep(float(outcome.headers.get("retry-after", 1)))

    longest = 0.5
    for _burst in range(3):
        async with anyio.create_task_group() as group:
            for index in range(CLAIMS):
                group.start_soon(claim_until_done, index, longest)
        if any(o.headers.get("idempotency-replayed") == "true" for o in attempts):
            break
        longest /= 4  # the server answered before most clients hung up: hang up sooner

    hung_up = [o for o in attempts if o.status is None]
    replayed = [o for o in attempts if o.headers.get("idempotency-replayed") == "true"]
    statuses = Counter(o.status for o in attempts)
    print(
        f"claims={len(given)} attempts={len(attempts)} hung_up={len(hung_up)} "
        f"replayed={len(replayed)} status={dict(statuses)}"
    )
    assert hung_up, "no client hung up: the fault was not injected"
    assert replayed, f"no retry found its first attempt's claim: {dict(statuses)}"
    assert len(set(given.values())) == len(given), "a task was given to two claims"
    in_progress = await pg_fetch(
        app.database_url,
        "SELECT id FROM tasks WHERE project_id = $1 AND status = 'in_progress'",
        project_id,
    )
    assert {row["id"] for row in in_progress} == set(given.values())
