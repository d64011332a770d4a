"""Task rules: visibility, assignees from the same project, versions, claims and leases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sessionwise import Session
from taskyard.api_types import Ref
from taskyard.errors import ProblemError, ProblemKind, unknown_reference
from taskyard.etags import IfMatch
from taskyard.projects.repository import ProjectRepository
from taskyard.projects.service import project_not_found
from taskyard.tasks.events import QueueEvents, after_commit
from taskyard.tasks.models import TaskStatus
from taskyard.tasks.repository import TaskFilters, TaskRepository
from taskyard.tasks.schemas import ClaimRequest, HeartbeatRequest, TaskCreate, TaskRead, TaskUpdate
from taskyard.timestamps import utc_now
from taskyard.workers.repository import WorkerRepository

__all__ = ["TaskService"]


def task_not_found(task_id: int) -> ProblemError:
    return ProblemError(ProblemKind.NOT_FOUND, f"task {task_id} not found")


def _not_in_project(worker_id: int, project_id: int) -> ProblemError:
    return unknown_reference("assignee_id", f"no worker {worker_id} in project {project_id}")


def _writable(task: TaskRead) -> dict[str, Any]:
    """The `WRITABLE` columns of *task*, as they are now."""
    return {
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.priority,
        "assignee_id": None if task.assignee is None else task.assignee.id,
        "lease_expires_at": task.lease_expires_at,
    }


class TaskService:
    def __init__(self, session: Session, events: QueueEvents | None = None) -> None:
        self.session = session
        self.events = events  # told what happened, after the commit (taskyard.tasks.events)
        self.tasks = TaskRepository(session)
        self.projects = ProjectRepository(session)
        self.workers = WorkerRepository(session)

    async def _assignee(self, worker_id: int, project_id: int) -> Ref:
        name = await self.workers.name_in_project(worker_id, project_id)
        if name is None:
            raise _not_in_project(worker_id, project_id)
        return Ref(id=worker_id, name=name)

    async def create(self, data: TaskCreate, user_id: int) -> TaskRead:
        refs = await self.tasks.new_task_refs(data.project_id, user_id, data.assignee_id)
        if refs is None:
            raise unknown_reference("project_id", f"project {data.project_id} not found")
        project_name, assignee_name = refs
        assignee = None
        if data.assignee_id is not None:
            if assignee_name is None:
                raise _not_in_project(data.assignee_id, data.project_id)
            assignee = Ref(id=data.assignee_id, name=assignee_name)
        now = utc_now()
        values: dict[str, Any] = {
            "project_id": data.project_id,
            "title": data.title,
            "description": data.description,
            "status": TaskStatus.PENDING,
            "priority": data.priority,
            "assignee_id": data.assignee_id,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "lease_expires_at": None,
        }
        task_id = await self.tasks.insert(values)
        if self.events is not None:
            after_commit(self.session, self.events.task_created)
        return TaskRead(
            id=task_id,
            project_id=data.project_id,
            title=data.title,
            description=data.description,
            status=TaskStatus.PENDING,
            priority=data.priority,
            assignee=assignee,
            project=Ref(id=data.project_id, name=project_name),
            version=1,
            created_at=now,
            updated_at=now,
            lease_expires_at=None,
        )

    async def get(self, task_id: int, user_id: int) -> TaskRead:
        task = await self.tasks.visible(task_id, user_id)
        if task is None:
            raise task_not_found(task_id)
        return task

    async def list_visible(
        self, user_id: int, filters: TaskFilters, after_id: int | None, limit: int
    ) -> list[TaskRead]:
        rows = await self.tasks.list_visible(user_id, filters, after_id, limit)
        # Only an empty answer needs telling apart: "no tasks" or "not your project".
        if (
            not rows
            and filters.project_id is not None
            and await self.projects.name_if_member(filters.project_id, user_id) is None
        ):
            raise project_not_found(filters.project_id)
        return rows

    async def _locked(self, task_id: int, user_id: int, if_match: IfMatch | None) -> TaskRead:
        task = await self.tasks.visible(task_id, user_id, lock=True)
        if task is None:
            raise task_not_found(task_id)
        if if_match is not None and not if_match.matches(task.version):
            raise if_match.fail(task.version)
        return task

    async def _write(
        self, task: TaskRead, changes: dict[str, Any], assignee: Ref | None
    ) -> TaskRead:
        """*task* with *changes* (`WRITABLE` columns) applied and stored; a new version."""
        now = utc_now()
        values = {**_writable(task), **changes, "updated_at": now}
        version = await self.tasks.write(task, values)
        if version is None:
            # Unreachable while the row lock is held; kept so that a change is never lost.
            raise ProblemError(ProblemKind.PRECONDITION_FAILED, "the task changed meanwhile")
        shown = {name: value for name, value in values.items() if name != "assignee_id"}
        return task.model_copy(update={**shown, "assignee": assignee, "version": version})

    async def update(
        self, task_id: int, data: TaskUpdate, if_match: IfMatch | None, user_id: int
    ) -> TaskRead:
        task = await self._locked(task_id, user_id, if_match)
        changes = data.model_dump(exclude_unset=True)
        if not changes:
            return task
        assignee = task.assignee
        if "assignee_id" in changes:
            worker_id = changes["assignee_id"]
            assignee = (
                None if worker_id is None else await self._assignee(worker_id, task.project_id)
            )
        if changes.get("status", TaskStatus.IN_PROGRESS) is not TaskStatus.IN_PROGRESS:
            changes["lease_expires_at"] = None  # a finished or reset task holds no lease
        return await self._write(task, changes, assignee)

    async def delete(self, task_id: int, if_match: IfMatch | None, user_id: int) -> None:
        task = await self._locked(task_id, user_id, if_match)
        if not await self.tasks.delete(task):
            raise ProblemError(ProblemKind.PRECONDITION_FAILED, "the task changed meanwhile")

    async def claim(self, data: ClaimRequest, user_id: int) -> TaskRead | None:
        """Take the worker's project's best claimable task; None when there is none."""
        worker = await self.workers.visible(data.worker_id, user_id)
        if worker is None or worker.id is None:
            raise unknown_reference("worker_id", f"worker {data.worker_id} not found")
        if data.project_id is not None and data.project_id != worker.project_id:
            raise unknown_reference(
                "project_id", f"worker {worker.id} belongs to project {worker.project_id}"
            )
        now = utc_now()
        task = await self.tasks.next_claimable(worker.project_id, now)
        if task is None:
            return None
        changes = {
            "status": TaskStatus.IN_PROGRESS,
            "assignee_id": worker.id,
            "lease_expires_at": now + timedelta(seconds=data.lease_seconds),
        }
        claimed = await self._write(task, changes, Ref(id=worker.id, name=worker.name))
        if self.events is not None:
            self._report_claim(task, now)
        return claimed

    def _report_claim(self, task: TaskRead, now: datetime) -> None:
        # Claimable since its lease expired (its worker vanished), or since its last change
        # (created, or set back to pending).
        expired = task.status is TaskStatus.IN_PROGRESS and task.lease_expires_at is not None
        since = task.lease_expires_at if expired and task.lease_expires_at else task.updated_at
        waited = (now - since).total_seconds()
        events = self.events
        assert events is not None
        after_commit(self.session, lambda: events.task_claimed(waited, lease_expired=expired))

    async def heartbeat(self, task_id: int, data: HeartbeatRequest, user_id: int) -> TaskRead:
        """Extend the lease of a task that *data.worker_id* holds; 409 if it does not."""
        task = await self._locked(task_id, user_id, None)
        holder = None if task.assignee is None else task.assignee.id
        if task.status is not TaskStatus.IN_PROGRESS or holder != data.worker_id:
            raise ProblemError(
                ProblemKind.CONFLICT,
                f"worker {data.worker_id} holds no lease on task {task_id} "
                "(finished, reassigned, or reclaimed after the lease expired)",
            )
        lease = utc_now() + timedelta(seconds=data.lease_seconds)
        return await self._write(task, {"lease_expires_at": lease}, task.assignee)
