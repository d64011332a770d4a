"""The background side: the same `db`, the same commit-or-rollback rules.

Run: ``TASKS_DB_URL=sqlite+aiosqlite:///./tasks.db uv run python -m examples.migrating.jobs``
"""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from examples.migrating.database import db
from examples.migrating.models import Task, Worker


async def add_worker(name: str) -> int:
    async with db.session() as session:  # commits when the block ends, rolls back on error
        worker = Worker(name=name)
        session.add(worker)
        await session.flush()
    return worker.id  # still readable after the commit (expire_on_commit=False)


async def assign_open_tasks(worker_id: int) -> int:
    async with db.session() as session:
        assigned = await session.scalars(
            update(Task)
            .where(Task.assignee_id.is_(None), Task.is_completed.is_(False))
            .values(assignee_id=worker_id)
            .returning(Task.id)
        )
        return len(assigned.all())


async def main() -> None:
    async with db:  # start() ... close(), as the web app's lifespan does
        worker_id = await add_worker("nightly-agent")
        print(f"assigned {await assign_open_tasks(worker_id)} tasks")


if __name__ == "__main__":
    asyncio.run(main())
