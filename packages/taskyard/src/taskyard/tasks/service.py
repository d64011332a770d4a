"""Task rules: visibility, assignees from the same project, versions, claims and leases,
completions and failures with retries. Every status change is checked against
`taskyard.tasks.lifecycle`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sessionwise import Session
from taskyard.api_types import Ref
from taskyard.errors import ProblemError, ProblemKind, unknown_reference
from taskyard.etags import IfMatch
from taskyard.projects.repository import ProjectRepository
from taskyard.projects.service import project_not_found
from taskyard.tasks.backoff import RetryPolicy
from taskyard.tasks.events import QueueEvents, after_commit
from taskyard.tasks.lifecycle import Event, next_status
from taskyard.tasks.models import AttemptOutcome, TaskStatus
from taskyard.tasks.repository import Claimer, ExpiredLease, TaskFilters, TaskRepository
from taskyard.tasks.schemas import (
    AttemptRead,
    ClaimRequest,
    CompleteManyRequest,
    CompleteRequest,
    FailRequest,
    HeartbeatRequest,
    TaskCreate,
    TaskRead,
    TaskUpdate,
)
from taskyard.tasks.wakeups import WakeupHub
from taskyard.timestamps import utc_now
from taskyard.workers.repository import WorkerRepository

__all__ = ["ClaimMiss", "TaskService", "task_not_found"]

_LEASE_EXPIRED = "lease expired: the worker sent no heartbeat, complete or fail in time"


@dataclass(frozen=True, slots=True)
class ClaimMiss:
    """A claim that found nothing: whose project, and when it next has a task by time alone."""

    project_id: int
    next_claimable_at: datetime | None


def task_not_found(task_id: int) -> ProblemError:
    return ProblemError(ProblemKind.NOT_FOUND, f"task {task_id} not found")


def _not_in_project(worker_id: int, project_id: int) -> ProblemError:
    return unknown_reference("assignee_id", f"no worker {worker_id} in project {project_id}")


def _lease_not_held(task_id: int, worker_id: int) -> ProblemError:
    return ProblemError(
        ProblemKind.CONFLICT,
        f"worker {worker_id} holds no lease on task {task_id} "
        "(finished, reassigned, or reclaimed after the lease expired)",
    )


def _writable(task: TaskRead) -> dict[str, Any]:
    """The `WRITABLE` columns of *task*, as they are now."""
    return {
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.priority,
        "assignee_id": None if task.assignee is None else task.assignee.id,
        "lease_expires_at": task.lease_expires_at,
        "result": task.result,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "run_after": task.run_after,
        "claimed_at": task.claimed_at,
        "last_error": task.last_error,
    }


class TaskService:
    """The task rules; *retry* says when a failed attempt is tried again; *events* is told
    what happened, once it committed (`taskyard.tasks.events`: the queue's metrics);
    *wakeups* is told, in the transaction, when a task may have become claimable (None:
    nobody waits in this process, e.g. the CLI)."""

    def __init__(
        self,
        session: Session,
        retry: RetryPolicy | None = None,
        events: QueueEvents | None = None,
        wakeups: WakeupHub | None = None,
    ) -> None:
        self.session = session
        self.events = events
        self.tasks = TaskRepository(session)
        self.projects = ProjectRepository(session)
        self.workers = WorkerRepository(session)
        self.retry_policy = retry or RetryPolicy()
        self.wakeups = wakeups

    async def _announce(self, project_id: int) -> None:
        if self.wakeups is not None:
            await self.wakeups.announce(self.session, project_id)

    def _report(self, event: Callable[[QueueEvents], None]) -> None:
        if self.events is not None:
            events = self.events
            after_commit(self.session, lambda: event(events))

    async def _assignee(self, worker_id: int, project_id: int) -> Ref:
        name = await self.workers.name_in_project(worker_id, project_id)
        if name is None:
            raise _not_in_project(worker_id, project_id)
        return Ref(id=worker_id, name=name)

    async def create(self, data: TaskCreate, user_id: int) -> TaskRead:
        refs = await self.tasks.new_task_refs(data.project_id, user_id, data.assignee_id)
        if refs is None:
            raise unknown_reference("project_id", f"project {data.project_id} not found")
        project_name, project_max_attempts, assignee_name = refs
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
            "payload": data.payload,
            "result": None,
            "attempts": 0,
            "max_attempts": data.max_attempts or project_max_attempts,
            "run_after": data.run_after or now,
            "claimed_at": None,
            "last_error": None,
        }
        task_id = await self.tasks.insert(values)
        await self._announce(data.project_id)  # claimable now, or at its run_after
        self._report(lambda events: events.task_created())
        shown = {name: value for name, value in values.items() if name != "assignee_id"}
        return TaskRead(
            id=task_id,
            assignee=assignee,
            project=Ref(id=data.project_id, name=project_name),
            **shown,
        )

    async def get(self, task_id: int, user_id: int) -> TaskRead:
        task = await self.tasks.visible(task_id, user_id)
        if task is None:
            raise task_not_found(task_id)
        return task

    async def attempts(self, task_id: int, user_id: int) -> list[AttemptRead]:
        """The task's attempts that failed or whose lease expired, oldest first."""
        await self.get(task_id, user_id)
        return await self.tasks.attempts(task_id)

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
        if "status" in changes:
            status = next_status(task.id, task.status, Event.EDIT, target=changes["status"])
            if status is not TaskStatus.IN_PROGRESS:
                changes["lease_expires_at"] = None  # a finished or reset task holds no lease
            if status is TaskStatus.PENDING and task.status is not TaskStatus.PENDING:
                await self._announce(task.project_id)  # back in the queue
        return await self._write(task, changes, assignee)

    async def delete(self, task_id: int, if_match: IfMatch | None, user_id: int) -> None:
        task = await self._locked(task_id, user_id, if_match)
        if not await self.tasks.delete(task):
            raise ProblemError(ProblemKind.PRECONDITION_FAILED, "the task changed meanwhile")

    async def _claimer(self, data: ClaimRequest, user_id: int) -> Claimer:
        claimer = await self.tasks.claimer(data.worker_id, user_id)
        if claimer is None:
            raise unknown_reference("worker_id", f"worker {data.worker_id} not found")
        if data.project_id is not None and data.project_id != claimer.project.id:
            raise unknown_reference(
                "project_id", f"worker {data.worker_id} belongs to project {claimer.project.id}"
            )
        return claimer

    async def claim_batch(self, data: ClaimRequest, user_id: int, limit: int) -> list[TaskRead]:
        """Take up to *limit* of the worker's project's due tasks, best first.

        Leases of the project that ran out are taken back first: each counts an attempt, and
        its task is pending again after a backoff (claimable by this very claim if that is
        already over) or, after its last attempt, dead.
        """
        claimer = await self._claimer(data, user_id)
        now = utc_now()
        await self.expire_leases(claimer.project.id, now)
        lease = now + timedelta(seconds=data.lease_seconds)
        claimed = await self.tasks.claim(claimer, limit, now, lease)
        self._claimed(claimed, now)
        return claimed

    def _claimed(self, claimed: list[TaskRead], now: datetime) -> None:
        for task in claimed:
            # How long it was due before a worker took it (run_after: created, or retried).
            self._report(functools.partial(_claimed, ((task.claimed_at or now) - task.run_after)))

    async def claim_or_miss(
        self, data: ClaimRequest, user_id: int, limit: int, *, waiting: bool
    ) -> list[TaskRead] | ClaimMiss:
        """`claim_batch`; when it takes nothing and the claim is *waiting*, also when to look
        again (it sleeps until then, or until a wake-up), learned in the same transaction."""
        claimer = await self._claimer(data, user_id)
        now = utc_now()
        await self.expire_leases(claimer.project.id, now)
        lease = now + timedelta(seconds=data.lease_seconds)
        claimed = await self.tasks.claim(claimer, limit, now, lease)
        if claimed:
            self._claimed(claimed, now)
            return claimed
        moment = await self.tasks.claimable_at(claimer.project.id, now) if waiting else None
        return ClaimMiss(claimer.project.id, moment)

    async def more_due(self, project_id: int) -> bool:
        """Whether the project has another due task, after a claim."""
        return await self.tasks.any_due(project_id, utc_now())

    async def claim(self, data: ClaimRequest, user_id: int) -> TaskRead | None:
        """Take the worker's project's best claimable task; None when there is none."""
        claimed = await self.claim_batch(data, user_id, 1)
        return claimed[0] if claimed else None

    async def expire_leases(self, project_id: int, now: datetime) -> int:
        """Take back the project's tasks whose lease ran out before *now*; how many."""
        expired = await self.tasks.expired_leases(project_id, now)
        if not expired:
            return 0
        releases, attempts = [], []
        for lease in expired:
            status, run_after = self._after_failure(
                lease.task_id, lease.attempt, lease.max_attempts, Event.EXPIRE, now
            )
            releases.append(
                {
                    "task_id": lease.task_id,
                    "expected": lease.version,
                    "new_status": status,
                    "new_run_after": run_after,
                    "new_last_error": _LEASE_EXPIRED,
                }
            )
            attempts.append(_attempt_record(lease))
        await self.tasks.release(releases, now)
        await self.tasks.record_attempts(attempts)
        self._report(lambda events: events.leases_expired(len(expired)))
        return len(expired)

    def _after_failure(
        self, task_id: int, attempt: int, max_attempts: int, event: Event, now: datetime
    ) -> tuple[TaskStatus, datetime]:
        """The status after failed attempt number *attempt*, and when it may run again."""
        attempts_left = attempt < max_attempts
        status = next_status(task_id, TaskStatus.IN_PROGRESS, event, attempts_left=attempts_left)
        run_after = now + self.retry_policy.delay(attempt) if attempts_left else now
        return status, run_after

    async def _held(self, task_id: int, worker_id: int, user_id: int, event: Event) -> TaskRead:
        """The task, locked, if *worker_id* holds its lease; a 409 if not."""
        task = await self._locked(task_id, user_id, None)
        holder = None if task.assignee is None else task.assignee.id
        if task.status is not TaskStatus.IN_PROGRESS or holder != worker_id:
            raise _lease_not_held(task_id, worker_id)
        next_status(task.id, task.status, event)  # in progress allows every lease event
        return task

    async def heartbeat(self, task_id: int, data: HeartbeatRequest, user_id: int) -> TaskRead:
        """Extend the lease of a task that *data.worker_id* holds; 409 if it does not."""
        task = await self._held(task_id, data.worker_id, user_id, Event.HEARTBEAT)
        lease = utc_now() + timedelta(seconds=data.lease_seconds)
        return await self._write(task, {"lease_expires_at": lease}, task.assignee)

    async def complete(self, task_id: int, data: CompleteRequest, user_id: int) -> TaskRead:
        """The holder of the lease finished the task, with *data.result*; 409 if not held."""
        task = await self._held(task_id, data.worker_id, user_id, Event.COMPLETE)
        changes = {
            "status": next_status(task.id, task.status, Event.COMPLETE),
            "result": data.result,
            "lease_expires_at": None,
        }
        self._report(lambda events: events.tasks_completed(1))
        return await self._write(task, changes, task.assignee)

    async def complete_batch(self, data: CompleteManyRequest, user_id: int) -> list[TaskRead]:
        """Complete several tasks the worker holds, with their results, in one transaction:
        all of them, or none (a 404 for a task not found, a 409 for one not held)."""
        wanted = [item.id for item in data.items]
        found = {task.id: task for task in await self.tasks.visible_many(wanted, user_id)}
        finished, shown = [], []
        now = utc_now()
        for item in data.items:
            task = found.get(item.id)
            if task is None:
                raise task_not_found(item.id)
            holder = None if task.assignee is None else task.assignee.id
            if task.status is not TaskStatus.IN_PROGRESS or holder != data.worker_id:
                raise _lease_not_held(task.id, data.worker_id)
            status = next_status(task.id, task.status, Event.COMPLETE)
            finished.append(
                {
                    "task_id": task.id,
                    "expected": task.version,
                    "new_status": status,
                    "new_result": item.result,
                }
            )
            changes = {
                "status": status,
                "result": item.result,
                "lease_expires_at": None,
                "updated_at": now,
                "version": task.version + 1,  # the row is locked: no one else moves it
            }
            shown.append(task.model_copy(update=changes))
        await self.tasks.finish_many(finished, now)
        self._report(lambda events: events.tasks_completed(len(shown)))
        return shown

    async def fail(self, task_id: int, data: FailRequest, user_id: int) -> TaskRead:
        """The holder of the lease failed the attempt: pending again after a backoff, or dead
        after the last attempt; the error is kept with the attempt."""
        task = await self._held(task_id, data.worker_id, user_id, Event.FAIL)
        now = utc_now()
        status, run_after = self._after_failure(
            task.id, task.attempts, task.max_attempts, Event.FAIL, now
        )
        await self.tasks.record_attempts(
            [
                {
                    "task_id": task.id,
                    "attempt": task.attempts,
                    "worker_id": data.worker_id,
                    "started_at": task.claimed_at or now,
                    "ended_at": now,
                    "outcome": AttemptOutcome.FAILED,
                    "error": data.error,
                }
            ]
        )
        changes = {
            "status": status,
            "lease_expires_at": None,
            "run_after": run_after,
            "last_error": data.error,
        }
        if status is TaskStatus.PENDING:
            await self._announce(task.project_id)  # waiters learn its run_after
        dead = status is TaskStatus.DEAD
        self._report(lambda events: events.task_failed(dead=dead))
        return await self._write(task, changes, task.assignee)

    async def retry(self, task_id: int, if_match: IfMatch | None, user_id: int) -> TaskRead:
        """Requeue a dead (or failed, or cancelled) task now, with a fresh set of attempts."""
        task = await self._locked(task_id, user_id, if_match)
        changes = {
            "status": next_status(task.id, task.status, Event.RETRY),
            "attempts": 0,
            "run_after": utc_now(),
            "lease_expires_at": None,
        }
        await self._announce(task.project_id)
        return await self._write(task, changes, task.assignee)


def _claimed(waited: timedelta, events: QueueEvents) -> None:
    events.task_claimed(waited.total_seconds())


def _attempt_record(lease: ExpiredLease) -> dict[str, Any]:
    return {
        "task_id": lease.task_id,
        "attempt": lease.attempt,
        "worker_id": lease.worker_id,
        "started_at": lease.started_at,
        "ended_at": lease.lease_expired_at,
        "outcome": AttemptOutcome.EXPIRED,
        "error": _LEASE_EXPIRED,
    }
