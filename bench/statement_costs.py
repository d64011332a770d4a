"""``python -m bench.statement_costs``: CPU cost of the pieces of taskyard's ``GET /tasks/{id}``.

cProfile under load attributes wall-clock time, which a busy machine inflates; this times the
pieces in-process with ``timeit`` (CPU-bound, no network) on a seeded database:

* building the task statement (``select`` + membership subquery + two ``joinedload``),
* its cache key (SQLAlchemy computes one per execution to find the compiled form),
* the whole ``TaskRepository.visible()`` call in a session (statement, execution, ORM
  loading), against the same query as a Core ``select`` of columns and as a plain asyncpg
  ``fetchrow`` of the same SQL,
* one ``Database.read_session()`` open + close around nothing, and the key lookup.

Prints microseconds per call (best of 5 repeats).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]
import uvloop
from sqlmodel import col, select

from bench import databases
from bench.sections import Run, prepare_postgres
from sessionwise import Database
from taskyard.projects.repository import member_project_ids
from taskyard.tasks.models import Task
from taskyard.tasks.repository import TaskRepository, _with_refs
from taskyard.users.service import UserService

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


def task_statement(task_id: int, user_id: int):  # type: ignore[no-untyped-def]
    return _with_refs(
        select(Task).where(
            Task.id == task_id, col(Task.project_id).in_(member_project_ids(user_id))
        )
    )


async def measure(url: str, api_key: str, task_id: int) -> dict[str, float]:
    costs: dict[str, float] = {}
    costs["build the task statement"] = best_us(lambda: task_statement(task_id, 1))
    statement = task_statement(task_id, 1)
    costs["its cache key"] = best_us(statement._generate_cache_key)
    async with Database(url) as db:
        async with db.read_session() as session:
            caller = await UserService(session).authenticate(api_key)
            assert caller is not None, "the seeded API key does not authenticate"
            user_id = caller.id

            async def visible() -> object:
                session.expunge_all()  # every request starts with an empty identity map
                return await TaskRepository(session).visible(task_id, user_id)

            costs["TaskRepository.visible() (ORM, joinedload)"] = await best_us_async(visible)

            async def core_columns() -> object:
                columns = statement.with_only_columns(*databases.TASKS.c)
                return (await session.execute(columns)).first()

            costs["same statement, Core columns"] = await best_us_async(core_columns)

            async def key_lookup() -> object:
                return await UserService(session).authenticate(api_key)

            costs["API key lookup (UserService.authenticate)"] = await best_us_async(key_lookup)

        async def empty_read_session() -> None:
            async with db.read_session():
                pass

        async def read_session_one_query() -> None:
            async with db.read_session() as session:
                await session.scalar(select(Task.id).where(Task.id == task_id))

        costs["read_session() open + close, no query"] = await best_us_async(empty_read_session)
        costs["read_session() + one tiny query"] = await best_us_async(read_session_one_query)
        sql = str(statement.compile(dialect=db.engine.dialect))
    connection = await asyncpg.connect(databases.asyncpg_dsn(url))
    try:
        costs["asyncpg fetchrow of the same SQL"] = await best_us_async(
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
