"""Worker rules: a worker belongs to one project and is visible to its members."""

from __future__ import annotations

from sessionwise import Session
from taskyard.errors import ProblemError, ProblemKind, unknown_reference
from taskyard.projects.repository import ProjectRepository
from taskyard.projects.service import project_not_found
from taskyard.timestamps import utc_now
from taskyard.workers.models import Worker
from taskyard.workers.repository import WorkerRepository
from taskyard.workers.schemas import WorkerCreate, WorkerUpdate

__all__ = ["WorkerService", "worker_not_found"]


def worker_not_found(worker_id: int) -> ProblemError:
    return ProblemError(ProblemKind.NOT_FOUND, f"worker {worker_id} not found")


class WorkerService:
    def __init__(self, session: Session) -> None:
        self.workers = WorkerRepository(session)
        self.projects = ProjectRepository(session)

    async def create(self, data: WorkerCreate, user_id: int) -> Worker:
        if await self.projects.visible(data.project_id, user_id) is None:
            raise unknown_reference("project_id", f"project {data.project_id} not found")
        now = utc_now()
        worker = Worker(project_id=data.project_id, name=data.name, created_at=now, updated_at=now)
        return await self.workers.add(worker)

    async def get(self, worker_id: int, user_id: int) -> Worker:
        worker = await self.workers.visible(worker_id, user_id)
        if worker is None:
            raise worker_not_found(worker_id)
        return worker

    async def list_visible(
        self, user_id: int, project_id: int | None, after_id: int | None, limit: int
    ) -> list[Worker]:
        rows = await self.workers.list_visible(user_id, project_id, after_id, limit)
        # Only an empty answer needs telling apart: "no workers" or "not your project".
        if (
            not rows
            and project_id is not None
            and await self.projects.visible(project_id, user_id) is None
        ):
            raise project_not_found(project_id)
        return rows

    async def update(self, worker_id: int, data: WorkerUpdate, user_id: int) -> Worker:
        worker = await self.get(worker_id, user_id)
        worker.name = data.name
        worker.updated_at = utc_now()
        await self.workers.session.flush()
        return worker

    async def delete(self, worker_id: int, user_id: int) -> None:
        await self.get(worker_id, user_id)
        await self.workers.delete(worker_id)
