"""The benchmark's sections: what runs against what, on which database.

* ``postgres``: raw, tutorial and taskyard (one worker each), the four calls at every
  connection count, interleaved; then ``idempotency``: taskyard's create without and with an
  ``Idempotency-Key`` (a new key per request), interleaved on the same server.
* ``metrics``: taskyard with everything of issue 13 off (no metrics, no session meters)
  against taskyard as it ships (metrics on), a read and a write, interleaved on one database.
* ``sqlite``: taskyard on its default SQLite file against the tutorial pattern on aiosqlite;
  then ``claims``: 16 concurrent claimers on taskyard, PostgreSQL against SQLite.
* ``scaling``: taskyard at 1, 2 and 4 workers, direct and through one PgBouncer in
  transaction mode (10 server connections): the mixed call's req/s and claims/s.
* ``memory``: resident size of a fresh taskyard process after 10k and after 100k mixed calls.
* ``queue``: 16 agents through claim -> complete, one task per claim against ``"limit": 10``,
  PostgreSQL and SQLite (`bench.queue`); then 200 idle agents claiming with
  ``wait_seconds``: the server's CPU and checked-out connections while they wait.
* ``library`` (issue 15): one contract without auth, five ways to serve it: the ceiling
  (FastAPI + pydantic on bare asyncpg), the tutorial pattern, fastapi-sqla, advanced-alchemy
  and sessionwise as its README teaches, interleaved at 32 connections. The peers run on
  ``bench/.peers-venv`` (`bench.peers`).

The ``postgres`` section runs the ceiling beside raw, tutorial and taskyard, so that
taskyard's ratio to it comes from the same interleaved run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import apps_under_test, databases, queue
from bench.databases import Seeded
from bench.measure import CALLS, KEYED_CALLS, CpuProbe, Progress, Results, Settings, interleave
from bench.servers import AppSpec, RunningApp, serve, serve_many
from bench.wrk import Target, run_wrk
from tests.support.pgbouncer import running_pgbouncer

CLAIMERS = 16
METRICS_CALLS = ("get", "create")
# Issue 13 all off: no Prometheus metrics or /metrics, and no session meters either (the
# slow-session warning installs them). Tracing is off unless TASKYARD_OTLP_ENDPOINT is set.
METRICS_OFF_ENV = {
    "TASKYARD_METRICS": "false",
    "TASKYARD_DATABASE": json.dumps({"slow_session_warning": None}),
}
TASK_KEYS = frozenset(
    {
        "id",
        "project_id",
        "title",
        "description",
        "status",
        "priority",
        "assignee",
        "project",
        "version",
        "created_at",
        "updated_at",
        "lease_expires_at",
        "payload",
        "result",
        "attempts",
        "max_attempts",
        "run_after",
        "claimed_at",
        "last_error",
    }
)


@dataclass
class Run:
    """One benchmark run: settings, where files go, and everything measured so far."""

    settings: Settings
    workdir: Path
    progress: Progress
    claim_stock: int
    memory_checkpoints: tuple[int, int]
    results: Results = field(default_factory=Results)
    memory: dict[str, Any] = field(default_factory=dict)
    queue: dict[str, Any] = field(default_factory=dict)
    preflight: dict[str, dict[str, int]] = field(default_factory=dict)
    # Every database name of the run ends with it: two runs on one server (several people
    # share this machine's PostgreSQL) must not migrate, seed or drop each other's databases.
    database_suffix: str = field(default_factory=lambda: f"_{secrets.token_hex(4)}")

    @property
    def logdir(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class PreparedDatabase:
    """A migrated, seeded database and what the wrk scripts need to use it."""

    label: str
    url: str
    seeded: Seeded
    ids_path: Path
    postgres_name: str | None = None

    def target(self, app: RunningApp) -> Target:
        return Target(
            base_url=app.base_url,
            api_key=self.seeded.api_key,
            project_id=str(self.seeded.project_id),
            ids_path=self.ids_path,
            worker_ids=tuple(str(worker) for worker in self.seeded.worker_ids),
        )

    def claim_target(self, app: RunningApp) -> Target:
        return dataclasses.replace(
            self.target(app),
            project_id=str(self.seeded.claim_project_id),
            worker_ids=tuple(str(worker) for worker in self.seeded.claimer_ids),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.api_key}"}


def prepare(
    run: Run,
    label: str,
    url: str,
    postgres_name: str | None = None,
    claim_stock: int | None = None,
) -> PreparedDatabase:
    """Migrate *url* with ``taskyard migrate``, make the API key, seed the data."""
    started = time.monotonic()
    databases.migrate(url)
    api_key = databases.create_api_key(url)
    stock = run.claim_stock if claim_stock is None else claim_stock
    seeded = asyncio.run(databases.seed(url, api_key, stock))
    ids_path = seeded.write_ids(run.workdir / f"{label}-task-ids.txt")
    run.progress(f"prepared {label} in {time.monotonic() - started:.1f}s")
    return PreparedDatabase(label, url, seeded, ids_path, postgres_name)


def prepare_postgres(run: Run, name: str, claim_stock: int | None = None) -> PreparedDatabase:
    url = asyncio.run(databases.recreate_database(name))
    return prepare(run, name, url, postgres_name=name, claim_stock=claim_stock)


LIBRARY_DATABASE_PREFIX = "bench_lib_"


def library_database_names(suffix: str) -> dict[str, str]:
    return {
        app: f"{LIBRARY_DATABASE_PREFIX}{app.replace('-', '_')}{suffix}"
        for app in apps_under_test.LIBRARY_APPS
    }


def prepare_library(run: Run) -> dict[str, PreparedDatabase]:
    """One database per library app: the first prepared, the others copies of it.

    ``CREATE DATABASE ... TEMPLATE`` copies the seeded database as it is, ids included, in a
    fraction of the time of migrating and seeding each. No claims stock: the section does
    not claim.
    """
    names = library_database_names(run.database_suffix)
    first_app, first_name = next(iter(names.items()))
    first = prepare_postgres(run, first_name, claim_stock=0)
    prepared = {first_app: first}
    for app, name in names.items():
        if app == first_app:
            continue
        url = asyncio.run(databases.copy_database(first_name, name))
        ids_path = first.seeded.write_ids(run.workdir / f"{name}-task-ids.txt")
        prepared[app] = PreparedDatabase(name, url, first.seeded, ids_path, name)
    return prepared


def sqlite_dir(run: Run, name: str) -> Path:
    path = run.workdir / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- checks before measuring -------------------------------------------------------------------


def preflight(run: Run, name: str, app: RunningApp, database: PreparedDatabase) -> None:
    """Each call once: it must answer its 2xx status with a task-shaped body.

    wrk only counts statuses; this makes sure a 2xx is the real answer (not, say, a redirect
    or an empty page) before any number is taken.
    """
    seeded = database.seeded
    task_id = seeded.task_ids[0]
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=app.base_url, headers=database.headers, timeout=30) as client:
        checks = {
            "get": (client.get(f"/api/v1/tasks/{task_id}"), 200),
            "list": (
                client.get("/api/v1/tasks", params={"project_id": seeded.project_id, "limit": 20}),
                200,
            ),
            "create": (
                client.post(
                    "/api/v1/tasks",
                    json={
                        "project_id": seeded.project_id,
                        "title": "preflight",
                        "assignee_id": seeded.worker_ids[0],
                    },
                ),
                201,
            ),
            "patch": (client.patch(f"/api/v1/tasks/{task_id}", json={"status": "pending"}), 200),
        }
    for call, (response, expected) in checks.items():
        statuses[call] = response.status_code
        if response.status_code != expected:
            raise RuntimeError(
                f"{name} {call}: expected {expected}, got {response.status_code}: "
                f"{response.text[:500]}"
            )
        body = response.json()
        task = body["items"][0] if call == "list" else body
        if call == "list" and (len(body["items"]) != 20 or set(body) != {"items", "next_cursor"}):
            raise RuntimeError(f"{name} list: not a page of 20 tasks: {str(body)[:500]}")
        if set(task) != TASK_KEYS:
            raise RuntimeError(f"{name} {call}: unexpected task keys {sorted(task)}")
    run.preflight[name] = statuses


# -- sections ------------------------------------------------------------------------------------


@contextlib.contextmanager
def started(
    run: Run, specs: Sequence[tuple[AppSpec, PreparedDatabase]]
) -> Iterator[list[tuple[str, RunningApp, PreparedDatabase]]]:
    with serve_many([(spec, database.headers) for spec, database in specs], run.logdir) as apps:
        yield [
            (spec.name, app, database) for (spec, database), app in zip(specs, apps, strict=True)
        ]


def cpu_probes(running: Sequence[tuple[str, RunningApp, PreparedDatabase]]) -> dict[str, CpuProbe]:
    return {name: app.cpu_seconds for name, app, _ in running}


def postgres_section(
    run: Run,
    raw: PreparedDatabase,
    tutorial: PreparedDatabase,
    ceiling: PreparedDatabase,
    taskyard: PreparedDatabase,
) -> None:
    specs = [
        (apps_under_test.raw(raw.url), raw),
        (apps_under_test.tutorial(tutorial.url), tutorial),
        (apps_under_test.ceiling(ceiling.url), ceiling),
        (apps_under_test.taskyard(taskyard.url), taskyard),
    ]
    with started(run, specs) as running:
        for name, app, database in running:
            preflight(run, name, app, database)
        targets = [(name, database.target(app)) for name, app, database in running]
        interleave(
            "postgres",
            targets,
            CALLS,
            run.settings,
            run.results,
            run.progress,
            cpu_probes=cpu_probes(running),
        )
        name, app, database = running[-1]
        preflight_keyed_create(run, name, app, database)
        interleave(
            "idempotency",
            [(name, database.target(app))],
            KEYED_CALLS,
            run.settings,
            run.results,
            run.progress,
            cpu_probes=cpu_probes(running),
        )


def metrics_section(run: Run, database: PreparedDatabase) -> None:
    """taskyard with metrics off against metrics on: what measuring costs (issue 13)."""
    specs = [
        (
            apps_under_test.taskyard(database.url, "metrics off", extra_env=METRICS_OFF_ENV),
            database,
        ),
        (apps_under_test.taskyard(database.url, "metrics on"), database),
    ]
    with started(run, specs) as running:
        for name, app, prepared in running:
            preflight(run, f"taskyard {name}", app, prepared)
        on = running[1][1]
        if httpx.get(f"{on.base_url}/metrics").status_code != 200:
            raise RuntimeError("taskyard with metrics on serves no /metrics")
        if httpx.get(f"{running[0][1].base_url}/metrics").status_code != 404:
            raise RuntimeError("taskyard with metrics off still serves /metrics")
        targets = [(name, prepared.target(app)) for name, app, prepared in running]
        interleave(
            "metrics",
            targets,
            METRICS_CALLS,
            run.settings,
            run.results,
            run.progress,
            cpu_probes=cpu_probes(running),
        )


def preflight_keyed_create(
    run: Run, name: str, app: RunningApp, database: PreparedDatabase
) -> None:
    """A keyed create answers 201, and its retry is the stored answer (issue 10)."""
    seeded = database.seeded
    body = {"project_id": seeded.project_id, "title": "keyed preflight"}
    headers = {**database.headers, "Idempotency-Key": f'"preflight-{time.time_ns()}"'}
    with httpx.Client(base_url=app.base_url, headers=headers, timeout=30) as client:
        first = client.post("/api/v1/tasks", json=body)
        again = client.post("/api/v1/tasks", json=body)
    if first.status_code != 201 or set(first.json()) != TASK_KEYS:
        raise RuntimeError(f"{name} keyed create: {first.status_code} {first.text[:500]}")
    if again.headers.get("idempotency-replayed") != "true" or again.content != first.content:
        raise RuntimeError(f"{name} keyed create: the retry was not a replay: {again.text[:500]}")
    run.preflight.setdefault(name, {})["create_keyed"] = first.status_code


def library_section(run: Run, prepared: dict[str, PreparedDatabase], peers_python: str) -> None:
    """The library apps (issue 15) interleaved on the four calls at 32 connections."""
    specs = [
        (apps_under_test.library(app, database.url, peers_python), database)
        for app, database in prepared.items()
    ]
    connections = (32,) if 32 in run.settings.connections else run.settings.connections[:1]
    settings = dataclasses.replace(run.settings, connections=connections)
    with started(run, specs) as running:
        for name, app, database in running:
            preflight(run, f"library {name}", app, database)
        targets = [(name, database.target(app)) for name, app, database in running]
        interleave(
            "library",
            targets,
            CALLS,
            settings,
            run.results,
            run.progress,
            cpu_probes=cpu_probes(running),
        )


def sqlite_section(run: Run) -> tuple[PreparedDatabase, PreparedDatabase]:
    """taskyard on its default file (``./taskyard.db``) vs the tutorial on aiosqlite."""
    taskyard_dir = sqlite_dir(run, "taskyard-sqlite")
    taskyard_db = prepare(run, "taskyard-sqlite", f"sqlite+aiosqlite:///{taskyard_dir}/taskyard.db")
    tutorial_dir = sqlite_dir(run, "tutorial-sqlite")
    tutorial_db = prepare(run, "tutorial-sqlite", f"sqlite+aiosqlite:///{tutorial_dir}/tutorial.db")
    specs = [
        (apps_under_test.taskyard(None, "taskyard", workdir=taskyard_dir), taskyard_db),
        (apps_under_test.tutorial(tutorial_db.url), tutorial_db),
    ]
    connections = (32,) if 32 in run.settings.connections else run.settings.connections[:1]
    settings = dataclasses.replace(run.settings, connections=connections)
    with started(run, specs) as running:
        for name, app, database in running:
            preflight(run, f"{name}-sqlite", app, database)
        targets = [(name, database.target(app)) for name, app, database in running]
        interleave(
            "sqlite",
            targets,
            CALLS,
            settings,
            run.results,
            run.progress,
            cpu_probes=cpu_probes(running),
        )
    return taskyard_db, tutorial_db


def claims_section(run: Run, postgres_db: PreparedDatabase, sqlite_db: PreparedDatabase) -> None:
    """16 concurrent claimers (round robin over 16 workers) against a reset stock of tasks."""
    sqlite_workdir = sqlite_dir(run, "taskyard-sqlite")
    specs = [
        (apps_under_test.taskyard(postgres_db.url, "postgres"), postgres_db),
        (apps_under_test.taskyard(None, "sqlite", workdir=sqlite_workdir), sqlite_db),
    ]
    by_name = {"postgres": postgres_db, "sqlite": sqlite_db}

    def reset(name: str, _call: str) -> None:
        database = by_name[name]
        asyncio.run(databases.reset_claims(database.url, database.seeded))

    settings = dataclasses.replace(run.settings, connections=(CLAIMERS,))
    with started(run, specs) as running:
        targets = [(name, database.claim_target(app)) for name, app, database in running]
        interleave(
            "claims",
            targets,
            ["claim"],
            settings,
            run.results,
            run.progress,
            reset,
            cpu_probes=cpu_probes(running),
        )


SCALING_WORKERS = (1, 2, 4)
SCALING_SERVER_CONNECTIONS = 10  # PgBouncer's pool: fewer than one worker's own (issue 12.6)
SCALING_CALLS = (("mixed", 32), ("claim", CLAIMERS))


def scaling_name(workers: int, pgbouncer: bool) -> str:
    name = f"{workers} worker{'s' if workers > 1 else ''}"
    return f"{name} + PgBouncer" if pgbouncer else name


def scaling_section(run: Run, database: PreparedDatabase) -> None:
    """taskyard at 1, 2 and 4 workers, direct and through one PgBouncer: mixed req/s, claims/s.

    One configuration at a time (not interleaved): the direct ones together would hold more
    connections (7 workers x 20) than the server's max_connections of 100.
    """

    def reset(_name: str, call: str) -> None:
        if call == "claim":
            asyncio.run(databases.reset_claims(database.url, database.seeded))

    with running_pgbouncer(database.url, pool_size=SCALING_SERVER_CONNECTIONS) as bouncer:
        through_bouncer = dataclasses.replace(database, url=bouncer.url)
        for pgbouncer in (False, True):
            for workers in SCALING_WORKERS:
                name = scaling_name(workers, pgbouncer)
                prepared = through_bouncer if pgbouncer else database
                extra_env = {"TASKYARD_DATABASE__PGBOUNCER": "true"} if pgbouncer else {}
                spec = apps_under_test.taskyard(
                    prepared.url, name, workers=workers, extra_env=extra_env
                )
                with started(run, [(spec, prepared)]) as running:
                    _, app, _ = running[0]
                    preflight(run, f"taskyard {name}", app, prepared)
                    for call, connections in SCALING_CALLS:
                        target = (
                            prepared.claim_target(app) if call == "claim" else prepared.target(app)
                        )
                        settings = dataclasses.replace(run.settings, connections=(connections,))
                        interleave(
                            "scaling",
                            [(name, target)],
                            [call],
                            settings,
                            run.results,
                            run.progress,
                            reset,
                            cpu_probes=cpu_probes(running),
                        )


def memory_section(run: Run, database: PreparedDatabase) -> None:
    """RSS of a fresh taskyard process after the first and the second checkpoint of calls."""
    first, second = run.memory_checkpoints
    spec = apps_under_test.taskyard(database.url, "taskyard-memory")
    with serve(spec, run.logdir, headers=database.headers) as app:
        target = database.target(app)
        readings: list[dict[str, Any]] = [{"after_requests": 0, "rss_kib": app.resident_kib()}]
        done = 0
        failures = 0
        for checkpoint in (first, second):
            measurement = run_wrk(
                target,
                "mixed",
                connections=32,
                duration_s=3600,  # an upper bound: the script stops after `stop_after`
                stop_after=checkpoint - done,
            )
            done += measurement.requests
            failures += measurement.failures
            time.sleep(1.0)  # let the last responses and pool returns settle
            rss = app.resident_kib()
            readings.append({"after_requests": done, "rss_kib": rss})
            run.progress(f"[memory] after {done} mixed requests: RSS {rss / 1024:.1f} MiB")
    at_first, at_second = readings[1]["rss_kib"], readings[2]["rss_kib"]
    run.memory = {
        "readings": readings,
        "growth_percent": round(100 * (at_second - at_first) / at_first, 2),
        "failures": failures,
        "connections": 32,
    }


def queue_section(run: Run, postgres_db: PreparedDatabase, sqlite_db: PreparedDatabase) -> None:
    """16 agents claiming and completing, batch 1 against batch 10, on both backends."""
    sqlite_workdir = sqlite_dir(run, "taskyard-sqlite")
    specs = [
        (apps_under_test.taskyard(postgres_db.url, "postgres"), postgres_db),
        (apps_under_test.taskyard(None, "sqlite", workdir=sqlite_workdir), sqlite_db),
    ]
    with started(run, specs) as running:
        backends = [
            (
                name,
                app,
                database.url,
                database.seeded.claim_project_id,
                database.seeded.claimer_ids,
                database.seeded.api_key,
            )
            for name, app, database in running
        ]
        results = queue.measure_throughput(
            backends, run.settings.duration_s, run.settings.rounds, run.progress
        )
        # Two rounds of re-claims: each agent's wait ends every IDLE_WAIT_SECONDS.
        window = max(2.2 * queue.IDLE_WAIT_SECONDS, 4 * run.settings.duration_s)
        idle = queue.measure_idle(
            [(name, app, api_key) for name, app, _url, _p, _w, api_key in backends],
            window,
            run.progress,
        )
    run.queue = {
        "throughput": [result.as_dict() for result in results],
        "idle": [result.as_dict() for result in idle],
        "summary": queue.summarize(results),
    }
    run.progress(f"[queue] {run.queue['summary']}")
