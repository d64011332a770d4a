"""Queries on workers, always limited to the caller's projects."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import col, delete, select

from sessionwise import Session
from taskyard.projects.repository import member_project_ids
from taskyard.workers.models import Worker

__all__ = ["WorkerRepository"]


# The statements of task writes and claims: built once, values bound.
_VISIBLE = select(Worker).where(
    Worker.id == bindparam("worker_id"),
    col(Worker.project_id).in_(member_project_ids(bindparam("user_id"))),
)
_NAME_IN_PROJECT = select(Worker.name).where(
    Worker.id == bindparam("worker_id"), Worker.project_id == bindparam("project_id")
)


class WorkerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def visible(self, worker_id: int, user_id: int) -> Worker | None:
        params = {"worker_id": worker_id, "user_id": user_id}
        return (await self.session.exec(_VISIBLE, params=params)).first()

    async def name_in_project(self, worker_id: int, project_id: int) -> str | None:
        """The worker's name if it belongs to *project_id*, else None."""
        params = {"worker_id": worker_id, "project_id": project_id}
        return (await self.session.exec(_NAME_IN_PROJECT, params=params)).first()

    async def list_visible(
        self, user_id: int, project_id: int | None, after_id: int | None, limit: int
    ) -> list[Worker]:
        statement = (
            select(Worker)
            .where(col(Worker.project_id).in_(member_project_ids(user_id)))
            .order_by(col(Worker.id))
            .limit(limit)
        )
        if project_id is not None:
            statement = statement.where(Worker.project_id == project_id)
        if after_id is not None:
            statement = statement.where(col(Worker.id) > after_id)
        return list(await self.session.exec(statement))

    async def add(self, worker: Worker) -> Worker:
        self.session.add(worker)
        await self.session.flush()
        return worker

    async def delete(self, worker_id: int) -> None:
        # Its tasks stay, unassigned: ON DELETE SET NULL on tasks.assignee_id.
        await self.session.exec(delete(Worker).where(col(Worker.id) == worker_id))
