"""``python -m bench.statement_costs``: CPU cost of the pieces of taskyard's ``GET /tasks/{id}``.

cProfile under load attributes wall-clock time, which a busy machine inflates; this times the
pieces in-process (best of 5 repeats, microseconds per call, wall clock on loopback) on a
seeded database:

* the task read as taskyard runs it (``TaskRepository.visible``: a Core statement built once)
  against the same read written the ORM way (``Task`` entities with two ``joinedload``, the
  statement built per call, as taskyard did before), and a plain asyncpg ``fetchrow``,
* the key lookup (``UserService.authenticate``),
* a read session around one tiny query, in a ``READ ONLY`` transaction and in autocommit
  (``read_sessions="autocommit"``, taskyard's setting).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]
import uvloop
from sqlalchemy.orm import joinedload
from sqlmodel import col, select

from bench import databases
from bench.sections import Run, prepare_postgres
from sessionwise import Database
from taskyard.projects.models import Project
from taskyard.projects.repository import member_project_ids
from taskyard.tasks.models import Task
from taskyard.tasks.repository import TaskRepository
from taskyard.users.service import UserService
from taskyard.workers.models import Worker

DATABASE = "bench_statement_costs"
REPEATS, NUMBER = 5, 300


def best_us(work: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(NUMBER):
            work()
        times.append((time.perf_counter() - started) / NUMBER)
    return min(times) * 1e6


async def best_us_async(work: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(NUMBER):
            await work()
        times.append((time.perf_counter() - started) / NUMBER)
    return min(times) * 1e6


def orm_task_statement(task_id: int, user_id: int):  # type: ignore[no-untyped-def]
    """The task read the ORM way, built per call: what taskyard did before."""
    return (
        select(Task)
        .where(Task.id == task_id, col(Task.project_id).in_(member_project_ids(user_id)))
        .options(
            joinedload(Task.project, innerjoin=True).load_only(Project.id, Project.name),  # type: ignore[arg-type]
            joinedload(Task.assignee).load_only(Worker.id, Worker.name),  # type: ignore[arg-type]
        )
    )


async def measure_reads(db: Database, api_key: str, task_id: int) -> dict[str, float]:
    costs: dict[str, float] = {}
    async with db.read_session() as session:
        caller = await UserService(session).authenticate(api_key)
        assert caller is not None, "the seeded API key does not authenticate"
        user_id = caller.id

        async def core_read() -> object:
            return await TaskRepository(session).visible(task_id, user_id)

        async def orm_read() -> object:
            session.expunge_all()  # every request starts with an empty identity map
            return (await session.exec(orm_task_statement(task_id, user_id))).first()

        async def key_lookup() -> object:
            return await UserService(session).authenticate(api_key)

        costs["TaskRepository.visible() (Core, built once)"] = await best_us_async(core_read)
        costs["the same read the ORM way (built per call)"] = await best_us_async(orm_read)
        costs["API key lookup (UserService.authenticate)"] = await best_us_async(key_lookup)
    return costs


async def measure(url: str, api_key: str, task_id: int) -> dict[str, float]:
    costs: dict[str, float] = {}
    costs["build the ORM task statement"] = best_us(lambda: orm_task_statement(task_id, 1))
    for mode in ("transaction", "autocommit"):
        async with Database(url, read_sessions=mode) as db:
            if mode == "transaction":
                costs.update(await measure_reads(db, api_key, task_id))
                sql = str(orm_task_statement(task_id, 1).compile(dialect=db.engine.dialect))

            async def read_session_one_query(db: Database = db) -> None:
                async with db.read_session() as session:
                    await session.scalar(select(Task.id).where(Task.id == task_id))

            costs[f"read_session() + one tiny query ({mode})"] = await best_us_async(
                read_session_one_query
            )
    connection = await asyncpg.connect(databases.asyncpg_dsn(url))
    try:
        costs["asyncpg fetchrow of the ORM read's SQL"] = await best_us_async(
            lambda: connection.fetchrow(sql, task_id, 1)
        )
    finally:
        await connection.close()
    return costs


def main() -> None:
    import tempfile
    from pathlib import Path

    from bench.measure import Settings
    from bench.runner import log

    run = Run(
        settings=Settings(duration_s=1, rounds=1, connections=(1,)),
        workdir=Path(tempfile.mkdtemp(prefix="bench-costs-")),
        progress=log,
        claim_stock=0,
        memory_checkpoints=(1, 2),
    )
    database = prepare_postgres(run, DATABASE)
    try:
        costs = uvloop.run(
            measure(database.url, database.seeded.api_key, database.seeded.task_ids[4])
        )
    finally:
        asyncio.run(databases.drop_database(DATABASE))
    width = max(len(name) for name in costs)
    for name, micros in costs.items():
        print(f"{name:<{width}}  {micros:8.1f} µs")


if __name__ == "__main__":
    main()
