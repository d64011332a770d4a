"""Demo data: a user with a key, a project, three workers and N tasks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sessionwise import Database
from taskyard.projects.models import Project
from taskyard.projects.repository import ProjectRepository
from taskyard.tasks.models import Task
from taskyard.users.repository import UserRepository
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService
from taskyard.workers.models import Worker

__all__ = ["SeedResult", "seed"]

_BATCH = 500
_VERBS = ["Fix", "Write", "Review", "Refactor", "Benchmark", "Document", "Test", "Deploy"]
_THINGS = ["login page", "billing export", "search index", "API docs", "CI cache", "backups"]


@dataclass(frozen=True)
class SeedResult:
    email: str
    api_key: str
    project_id: int
    worker_ids: list[int]
    task_ids: range


async def seed(
    db: Database,
    tasks: int,
    email: str,
    name: str = "Demo User",
    progress: Callable[[int], None] = lambda _done: None,
) -> SeedResult:
    """Seed into *db* (started, migrated); *progress* is called with each batch's size."""
    async with db.session() as session:
        users = UserService(session)
        existing = await UserRepository(session).by_email(email.lower())
        if existing is None:
            _, issued = await users.create_user(UserCreate(email=email, name=name), "seed")
        else:
            issued = await users.create_key(email, "seed")
        owner_id = issued.key.user_id
        project = await ProjectRepository(session).add(
            Project(
                name="Demo project", description="Seeded by `taskyard seed`.", owner_id=owner_id
            ),
            owner_id,
        )
        assert project.id is not None
        workers = [Worker(project_id=project.id, name=f"agent-{n}") for n in (1, 2, 3)]
        session.add_all(workers)
        await session.flush()
        project_id, worker_ids = project.id, [w.id for w in workers if w.id is not None]

    rng = random.Random(project_id)
    first = last = 0
    for start in range(0, tasks, _BATCH):
        size = min(_BATCH, tasks - start)
        async with db.session() as session:
            batch = [
                Task(
                    project_id=project_id,
                    title=f"{rng.choice(_VERBS)} the {rng.choice(_THINGS)} #{start + n + 1}",
                    priority=rng.randint(-5, 5),
                )
                for n in range(size)
            ]
            session.add_all(batch)
            await session.flush()
            ids = [task.id for task in batch if task.id is not None]
            first, last = first or min(ids), max(ids)
        progress(size)
    return SeedResult(
        email=email.lower(),
        api_key=issued.api_key,
        project_id=project_id,
        worker_ids=worker_ids,
        task_ids=range(first, last + 1) if tasks else range(0),
    )
