"""Task rules: visibility, assignees from the same project, versions, claims and leases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value

from sessionwise import Session
from taskyard.api_types import Ref
from taskyard.errors import ProblemError, ProblemKind, unknown_reference
from taskyard.etags import IfMatch
from taskyard.projects.repository import ProjectRepository
from taskyard.projects.service import project_not_found
from taskyard.tasks import reads
from taskyard.tasks.models import Task, TaskStatus
from taskyard.tasks.repository import TaskFilters, TaskRepository
from taskyard.tasks.schemas import ClaimRequest, HeartbeatRequest, TaskCreate, TaskRead, TaskUpdate
from taskyard.timestamps import utc_now
from taskyard.workers.models import Worker
from taskyard.workers.repository import WorkerRepository

__all__ = ["TaskService", "task_read"]


def task_not_found(task_id: int) -> ProblemError:
    return ProblemError(ProblemKind.NOT_FOUND, f"task {task_id} not found")


def task_read(task: Task) -> TaskRead:
    """The API view of a task whose project and assignee are loaded."""
    assert task.id is not None
    project, assignee = task.project, task.assignee
    return TaskRead(
        id=task.id,
        project_id=task.project_id,
        title=task.title,
        description=task.description,
        status=task.status,
        priority=task.priority,
        assignee=None if assignee is None else Ref(id=assignee.id or 0, name=assignee.name),
        project=Ref(id=project.id or 0, name=project.name),
        version=task.version,
        created_at=task.created_at,
        updated_at=task.updated_at,
        lease_expires_at=task.lease_expires_at,
    )


class TaskService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.tasks = TaskRepository(session)
        self.projects = ProjectRepository(session)
        self.workers = WorkerRepository(session)

    async def _assignee(self, worker_id: int, project_id: int) -> Worker:
        worker = await self.workers.in_project(worker_id, project_id)
        if worker is None:
            raise unknown_reference("assignee_id", f"no worker {worker_id} in project {project_id}")
        return worker

    async def create(self, data: TaskCreate, user_id: int) -> Task:
        found = await self.projects.visible(data.project_id, user_id)
        if found is None:
            raise unknown_reference("project_id", f"project {data.project_id} not found")
        assignee = None
        if data.assignee_id is not None:
            assignee = await self._assignee(data.assignee_id, data.project_id)
        now = utc_now()
        task = Task(
            project_id=data.project_id,
            title=data.title,
            description=data.description,
            priority=data.priority,
            assignee_id=data.assignee_id,
            created_at=now,
            updated_at=now,
        )
        # Known already: set without marking anything for the flush, so the read needs no
        # further query.
        set_committed_value(task, "project", found[0])
        set_committed_value(task, "assignee", assignee)
        return await self.tasks.add(task)

    async def get(self, task_id: int, user_id: int) -> TaskRead:
        task = await reads.read_task(self.session, task_id, user_id)
        if task is None:
            raise task_not_found(task_id)
        return task

    async def list_visible(
        self, user_id: int, filters: TaskFilters, after_id: int | None, limit: int
    ) -> list[TaskRead]:
        rows = await reads.list_tasks(
            self.session,
            user_id,
            project_id=filters.project_id,
            status=filters.status,
            assignee_id=filters.assignee_id,
            after_id=after_id,
            limit=limit,
        )
        # Only an empty answer needs telling apart: "no tasks" or "not your project".
        if (
            not rows
            and filters.project_id is not None
            and await self.projects.visible(filters.project_id, user_id) is None
        ):
            raise project_not_found(filters.project_id)
        return rows

    async def _locked(self, task_id: int, user_id: int, if_match: IfMatch | None) -> Task:
        task = await self.tasks.visible(task_id, user_id, lock=True)
        if task is None:
            raise task_not_found(task_id)
        if if_match is not None and not if_match.matches(task.version):
            raise if_match.fail(task.version)
        return task

    async def _write(self, task: Task, values: dict[str, Any]) -> Task:
        values["updated_at"] = utc_now()
        if not await self.tasks.update(task, values):
            # Unreachable while the row lock is held; kept so that a change is never lost.
            raise ProblemError(ProblemKind.PRECONDITION_FAILED, "the task changed meanwhile")
        return task

    async def update(
        self, task_id: int, data: TaskUpdate, if_match: IfMatch | None, user_id: int
    ) -> Task:
        task = await self._locked(task_id, user_id, if_match)
        values = data.model_dump(exclude_unset=True)
        if not values:
            return task
        if "assignee_id" in values:
            worker_id = values["assignee_id"]
            assignee = (
                None if worker_id is None else await self._assignee(worker_id, task.project_id)
            )
        else:
            assignee = task.assignee
        if values.get("status", TaskStatus.IN_PROGRESS) is not TaskStatus.IN_PROGRESS:
            values["lease_expires_at"] = None  # a finished or reset task holds no lease
        await self._write(task, values)
        set_committed_value(task, "assignee", assignee)
        return task

    async def delete(self, task_id: int, if_match: IfMatch | None, user_id: int) -> None:
        task = await self._locked(task_id, user_id, if_match)
        if not await self.tasks.delete(task):
            raise ProblemError(ProblemKind.PRECONDITION_FAILED, "the task changed meanwhile")

    async def claim(self, data: ClaimRequest, user_id: int) -> Task | None:
        """Take the worker's project's best claimable task; None when there is none."""
        worker = await self.workers.visible(data.worker_id, user_id)
        if worker is None:
            raise unknown_reference("worker_id", f"worker {data.worker_id} not found")
        if data.project_id is not None and data.project_id != worker.project_id:
            raise unknown_reference(
                "project_id", f"worker {worker.id} belongs to project {worker.project_id}"
            )
        now = utc_now()
        task = await self.tasks.next_claimable(worker.project_id, now)
        if task is None:
            return None
        await self._write(
            task,
            {
                "status": TaskStatus.IN_PROGRESS,
                "assignee_id": worker.id,
                "lease_expires_at": now + timedelta(seconds=data.lease_seconds),
            },
        )
        set_committed_value(task, "assignee", worker)
        return task

    async def heartbeat(self, task_id: int, data: HeartbeatRequest, user_id: int) -> Task:
        """Extend the lease of a task that *data.worker_id* holds; 409 if it does not."""
        task = await self._locked(task_id, user_id, None)
        if task.status is not TaskStatus.IN_PROGRESS or task.assignee_id != data.worker_id:
            raise ProblemError(
                ProblemKind.CONFLICT,
                f"worker {data.worker_id} holds no lease on task {task_id} "
                "(finished, reassigned, or reclaimed after the lease expired)",
            )
        lease = utc_now() + timedelta(seconds=data.lease_seconds)
        return await self._write(task, {"lease_expires_at": lease})
