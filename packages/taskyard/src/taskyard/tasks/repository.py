"""Queries on tasks, always limited to the caller's projects.

Every read loads what it returns in the same statement (the project and the assignee, joined),
so listing 100 tasks is one query, not 201 (relationships are ``lazy="raise"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import joinedload
from sqlmodel import col, delete, select
from sqlmodel.sql.expression import SelectOfScalar

from sessionwise import Session
from taskyard.projects.models import Project
from taskyard.projects.repository import member_project_ids
from taskyard.tasks.models import Task, TaskStatus
from taskyard.workers.models import Worker

__all__ = ["TaskFilters", "TaskRepository"]


def _with_refs(statement: SelectOfScalar[Task]) -> SelectOfScalar[Task]:
    # Only what a task read embeds ({"id", "name"}): no project description per row.
    return statement.options(
        joinedload(Task.project, innerjoin=True).load_only(Project.id, Project.name),  # type: ignore[arg-type]
        joinedload(Task.assignee).load_only(Worker.id, Worker.name),  # type: ignore[arg-type]
    )


# Built once, with bound parameters: building it per request cost more than executing it.
_VISIBLE = _with_refs(
    select(Task).where(
        Task.id == bindparam("task_id"),
        col(Task.project_id).in_(member_project_ids(bindparam("user_id"))),
    )
)
_VISIBLE_LOCKED = _VISIBLE.with_for_update(of=Task)


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """The optional filters of ``GET /tasks``."""

    project_id: int | None = None
    status: TaskStatus | None = None
    assignee_id: int | None = None


class TaskRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def visible(self, task_id: int, user_id: int, *, lock: bool = False) -> Task | None:
        """The task with its project and assignee, if *user_id* is a member of its project.

        ``lock`` takes the row lock (PostgreSQL ``FOR UPDATE OF tasks``) so that the checks a
        change depends on still hold when it is written. On SQLite the write transaction
        already holds the database's write lock (sessionwise begins it IMMEDIATE). Reads that
        only show the task use `taskyard.tasks.reads` instead.
        """
        statement = _VISIBLE_LOCKED if lock else _VISIBLE
        params = {"task_id": task_id, "user_id": user_id}
        return (await self.session.exec(statement, params=params)).first()

    async def add(self, task: Task) -> Task:
        self.session.add(task)
        await self.session.flush()
        return task

    async def update(self, task: Task, values: Mapping[str, Any]) -> bool:
        """Apply *values* to the task if it is still at ``task.version``; bump the version.

        One atomic ``UPDATE ... SET version = version + 1 WHERE id = :id AND version = :v``:
        of two writers that read the same version, exactly one changes the row. ``task`` is
        refreshed from ``RETURNING``. False when the version moved on (or the row is gone).
        """
        statement = (
            update(Task)
            .where(col(Task.id) == task.id, col(Task.version) == task.version)
            .values(**values, version=col(Task.version) + 1)
            .returning(Task)
        )
        return (await self.session.exec(statement)).first() is not None

    async def delete(self, task: Task) -> bool:
        statement = delete(Task).where(col(Task.id) == task.id, col(Task.version) == task.version)
        return (await self.session.exec(statement)).rowcount == 1

    async def next_claimable(self, project_id: int, now: datetime) -> Task | None:
        """The project's best claimable task, row-locked; locked rows are skipped.

        Pending, or in progress with an expired lease; highest priority, then oldest. On
        PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets concurrent claimers each take a different
        row without waiting (PostgreSQL docs, SELECT, "The Locking Clause"); SQLite has no row
        locks and ignores the clause, and its IMMEDIATE write transaction makes the
        select-then-update atomic instead.
        """
        statement = (
            select(Task)
            .where(
                Task.project_id == project_id,
                or_(
                    col(Task.status) == TaskStatus.PENDING,
                    (col(Task.status) == TaskStatus.IN_PROGRESS)
                    & (col(Task.lease_expires_at) < now),
                ),
            )
            .order_by(col(Task.priority).desc(), col(Task.created_at), col(Task.id))
            .limit(1)
            .with_for_update(skip_locked=True, of=Task)
            .options(joinedload(Task.project, innerjoin=True))  # type: ignore[arg-type]
        )
        return (await self.session.exec(statement)).first()
