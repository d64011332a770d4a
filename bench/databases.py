"""The benchmark's databases: created fresh, migrated with taskyard's migrations, seeded alike.

Every app gets its own database with taskyard's schema (the raw and tutorial apps use
taskyard's tables and indexes, so no app is faster for a better index), one user and API key
made with ``taskyard users create`` (the key is the last line it prints), one project with
4 workers and 1,000 tasks, and a second project for claims with 16 workers and a stock of
pending tasks. The data is the same in every database; the seeded task ids are written to a
file for the wrk scripts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from taskyard.projects.models import Project, ProjectMember, Role
from taskyard.tasks.models import Task, TaskStatus
from taskyard.users.models import User
from taskyard.workers.models import Worker

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
SEEDED_TASKS = 1_000
WORKERS = 4
CLAIMERS = 16
OWNER_EMAIL = "bench-owner@example.test"
DESCRIPTION = "Seeded by the benchmark: a description of ordinary length for a task. " * 2


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


# taskyard's tables, used as plain Core tables: seeding is bulk inserts, no ORM objects.
USERS, PROJECTS, MEMBERS = _table(User), _table(Project), _table(ProjectMember)
WORKER_TABLE, TASKS = _table(Worker), _table(Task)


def postgres_url(database: str) -> str:
    """The SQLAlchemy (asyncpg) URL of *database* on the benchmark's server."""
    return make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL as a plain libpq DSN, for asyncpg itself."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def recreate_database(name: str) -> str:
    """Drop *name* if it exists and create it empty; returns its SQLAlchemy URL."""
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres_url(name)


async def copy_database(source: str, name: str) -> str:
    """*name* as a copy of *source* (``CREATE DATABASE ... TEMPLATE``); returns its URL.

    The template must have no connections while it is copied, which holds between sections.
    """
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    finally:
        await admin.close()
    return postgres_url(name)


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def taskyard_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run ``taskyard <args>`` as a user would and return its stdout."""
    command = [sys.executable, "-m", "taskyard", *args]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("TASKYARD_DATABASE_URL", None)  # the --database-url flag decides
    completed = subprocess.run(
        command, capture_output=True, text=True, env=full_env, check=False, timeout=120
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"taskyard {' '.join(args)} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed.stdout


def migrate(url: str) -> None:
    taskyard_cli("migrate", "--database-url", url)


def create_api_key(url: str) -> str:
    """A user and API key made with ``taskyard users create``; the key is its last line."""
    stdout = taskyard_cli(
        "users", "create", "--email", OWNER_EMAIL, "--name", "Bench Owner", "--database-url", url
    )
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("`taskyard users create` printed no API key")
    return lines[-1]


@dataclass(frozen=True)
class Seeded:
    """What the wrk scripts need to know about a seeded database."""

    api_key: str
    project_id: int
    worker_ids: tuple[int, ...]
    task_ids: tuple[int, ...]
    claim_project_id: int
    claimer_ids: tuple[int, ...]

    def write_ids(self, path: Path) -> Path:
        path.write_text("".join(f"{task_id}\n" for task_id in self.task_ids))
        return path


async def seed(url: str, api_key: str, claim_stock: int) -> Seeded:
    """The benchmark data, identical in every database (ids included, as each is fresh)."""
    engine = create_async_engine(url)
    try:
        return await _seed(engine, api_key, claim_stock)
    finally:
        await engine.dispose()


async def _seed(engine: AsyncEngine, api_key: str, claim_stock: int) -> Seeded:
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        owner_id = (
            await connection.execute(select(USERS.c.id).where(USERS.c.email == OWNER_EMAIL))
        ).scalar_one()
        project_ids = []
        for name in ("Benchmark", "Claims"):
            project_id = (
                await connection.execute(
                    insert(PROJECTS)
                    .values(
                        name=name, description="", owner_id=owner_id, created_at=now, updated_at=now
                    )
                    .returning(PROJECTS.c.id)
                )
            ).scalar_one()
            await connection.execute(
                insert(MEMBERS).values(
                    project_id=project_id, user_id=owner_id, role=Role.OWNER, created_at=now
                )
            )
            project_ids.append(project_id)
        project_id, claim_project_id = project_ids
        worker_ids = await _workers(connection, project_id, WORKERS, now)
        claimer_ids = await _workers(connection, claim_project_id, CLAIMERS, now)
        rows = [
            {
                "project_id": project_id,
                "title": f"Seeded task {number}",
                "description": DESCRIPTION,
                "status": TaskStatus.PENDING,
                "priority": number % 5,
                # Half of the tasks have an assignee, so reads embed both shapes.
                "assignee_id": worker_ids[number % WORKERS] if number % 2 else None,
                "version": 1,
                "created_at": now + timedelta(microseconds=number),
                "updated_at": now + timedelta(microseconds=number),
            }
            for number in range(1, SEEDED_TASKS + 1)
        ]
        await connection.execute(insert(TASKS), rows)
        task_ids = tuple(
            (
                await connection.execute(
                    select(TASKS.c.id).where(TASKS.c.project_id == project_id).order_by(TASKS.c.id)
                )
            ).scalars()
        )
        await _claim_stock(connection, claim_project_id, claim_stock, now)
        # Planner statistics, as a database in use has them: without, PostgreSQL plans the
        # first minutes of queries for empty tables.
        await connection.exec_driver_sql("ANALYZE")
    return Seeded(
        api_key=api_key,
        project_id=project_id,
        worker_ids=worker_ids,
        task_ids=task_ids,
        claim_project_id=claim_project_id,
        claimer_ids=claimer_ids,
    )


async def _workers(
    connection: AsyncConnection, project_id: int, count: int, now: datetime
) -> tuple[int, ...]:
    result = await connection.execute(
        insert(WORKER_TABLE).returning(WORKER_TABLE.c.id),
        [
            {"project_id": project_id, "name": f"worker {n}", "created_at": now, "updated_at": now}
            for n in range(1, count + 1)
        ],
    )
    return tuple(sorted(result.scalars()))


async def _claim_stock(
    connection: AsyncConnection, project_id: int, count: int, now: datetime
) -> None:
    if count == 0:
        return
    rows = [
        {
            "project_id": project_id,
            "title": f"Claimable task {number}",
            "description": "",
            "status": TaskStatus.PENDING,
            "priority": number % 3,
            "assignee_id": None,
            "version": 1,
            "created_at": now + timedelta(microseconds=number),
            "updated_at": now + timedelta(microseconds=number),
        }
        for number in range(1, count + 1)
    ]
    await connection.execute(insert(TASKS), rows)


async def reset_claims(url: str, seeded: Seeded) -> None:
    """Every task of the claims project pending again, so each claim run starts alike."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(TASKS)
                .where(TASKS.c.project_id == seeded.claim_project_id)
                .values(
                    status=TaskStatus.PENDING, assignee_id=None, lease_expires_at=None, version=1
                )
            )
    finally:
        await engine.dispose()
