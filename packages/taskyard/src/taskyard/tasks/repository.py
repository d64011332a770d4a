"""Statements on tasks: Core, built once, limited to the caller's projects.

Tasks are the hot path of the service (every worker polls, claims and updates them), so this
repository works in Core rows rather than ORM objects: each statement selects exactly what a
`TaskRead` shows (the task, its project's name, its assignee's name, joined) and takes every
value as a bound parameter. The statements are built once per process, so SQLAlchemy finds
them in its compiled cache without rebuilding or re-inspecting anything. Against the ORM
version (``Task`` objects with two ``joinedload``s, statements built per request) this halved
the server CPU of ``GET /tasks/{id}`` (bench/notes/profile.md). The ``Task`` model still
defines the table, its migrations and the other domains' relationships.

A task is visible to members of its project only: every read carries ``:user_id``.

Claims take up to ``:limit`` tasks in one statement (`claim`): the due pending tasks, best
first, locked with ``FOR UPDATE SKIP LOCKED`` in a CTE and updated by the same statement.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, insert, select, update

from sessionwise import Session
from taskyard.api_types import Ref
from taskyard.projects.models import Project, ProjectMember
from taskyard.tables import table_of
from taskyard.tasks.lifecycle import CLAIMABLE, Event, next_status
from taskyard.tasks.models import Task, TaskAttempt, TaskStatus
from taskyard.tasks.schemas import AttemptRead, TaskRead
from taskyard.workers.models import Worker

__all__ = ["WRITABLE", "Claimer", "ExpiredLease", "TaskFilters", "TaskRepository"]

_tasks, _projects, _workers = table_of(Task), table_of(Project), table_of(Worker)
_members, _attempts = table_of(ProjectMember), table_of(TaskAttempt)

WRITABLE = (
    "title",
    "description",
    "status",
    "priority",
    "assignee_id",
    "lease_expires_at",
    "result",
    "attempts",
    "max_attempts",
    "run_after",
    "claimed_at",
    "last_error",
)
"""The columns a change may set; `TaskRepository.write` sets all of them."""

_TASK_COLUMNS = (
    "id",
    "project_id",
    "title",
    "description",
    "status",
    "priority",
    "version",
    "created_at",
    "updated_at",
    "lease_expires_at",
    "payload",
    "result",
    "attempts",
    "max_attempts",
    "run_after",
    "claimed_at",
    "last_error",
)
_COLUMNS = (
    *(_tasks.c[name] for name in _TASK_COLUMNS),
    _projects.c.name.label("project_name"),
    _workers.c.id.label("assignee_id"),
    _workers.c.name.label("assignee_name"),
)
_FROM = _tasks.join(_projects, _projects.c.id == _tasks.c.project_id).outerjoin(
    _workers, _workers.c.id == _tasks.c.assignee_id
)
_VISIBLE = _tasks.c.project_id.in_(
    select(_members.c.project_id).where(_members.c.user_id == bindparam("user_id"))
)
_READ = select(*_COLUMNS).select_from(_FROM)

_ONE = _READ.where(_tasks.c.id == bindparam("task_id"), _VISIBLE)
# FOR UPDATE OF tasks: the checks a change depends on still hold when it is written. SQLite
# ignores the clause; its write transaction holds the database's write lock (sessionwise
# begins it IMMEDIATE).
_ONE_LOCKED = _ONE.with_for_update(of=_tasks)
# Several tasks at once, locked in id order (two batches over the same tasks cannot deadlock).
_MANY_LOCKED = (
    _READ.where(_tasks.c.id.in_(bindparam("task_ids", expanding=True)), _VISIBLE)
    .order_by(_tasks.c.id)
    .with_for_update(of=_tasks)
)


_CLAIM_ORDER = (_tasks.c.priority.desc(), _tasks.c.run_after, _tasks.c.id)
_CLAIMED = next_status(0, CLAIMABLE, Event.CLAIM)

# Best first: highest priority, then longest due. The due pending tasks come off
# ix_tasks_claim_order in that order (``run_after <= :now`` is checked on its entries), so
# PostgreSQL stops at the first :limit unlocked rows. SKIP LOCKED: concurrent claimers each
# take different rows without waiting (PostgreSQL docs, SELECT, "The Locking Clause"). A CTE
# with a locking clause is evaluated once, never inlined into the UPDATE (PostgreSQL docs,
# WITH Queries, 7.8.4), so the rows locked are the rows updated. SQLite ignores the locking
# clause: sessionwise begins its write transactions IMMEDIATE, so claims run one at a time.
_CLAIMABLE_IDS = (
    select(_tasks.c.id)
    .where(
        _tasks.c.project_id == bindparam("claim_project_id"),
        _tasks.c.status == CLAIMABLE,
        _tasks.c.run_after <= bindparam("now"),
    )
    .order_by(*_CLAIM_ORDER)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True, of=_tasks)
    .cte("claimable")
)
_CLAIM = (
    update(_tasks)
    .where(_tasks.c.id.in_(select(_CLAIMABLE_IDS.c.id)))
    .values(
        status=_CLAIMED,
        assignee_id=bindparam("claim_worker_id"),
        lease_expires_at=bindparam("claim_lease"),
        claimed_at=bindparam("now"),
        attempts=_tasks.c.attempts + 1,
        updated_at=bindparam("now"),
        version=_tasks.c.version + 1,
    )
    .returning(*(_tasks.c[name] for name in _TASK_COLUMNS))
)

# Leases that ran out: their tasks are taken back (an attempt each) before a claim.
_EXPIRED = (
    select(
        _tasks.c.id,
        _tasks.c.version,
        _tasks.c.assignee_id,
        _tasks.c.attempts,
        _tasks.c.max_attempts,
        _tasks.c.claimed_at,
        _tasks.c.lease_expires_at,
    )
    .where(
        _tasks.c.project_id == bindparam("project_id"),
        _tasks.c.status == TaskStatus.IN_PROGRESS,
        _tasks.c.lease_expires_at < bindparam("now"),
    )
    .order_by(_tasks.c.lease_expires_at)
    .limit(100)
    .with_for_update(skip_locked=True, of=_tasks)
)
_RELEASE = (
    update(_tasks)
    .where(_tasks.c.id == bindparam("task_id"), _tasks.c.version == bindparam("expected"))
    .values(
        status=bindparam("new_status"),
        lease_expires_at=None,
        run_after=bindparam("new_run_after"),
        last_error=bindparam("new_last_error"),
        updated_at=bindparam("now"),
        version=_tasks.c.version + 1,
    )
)
_INSERT_ATTEMPT = insert(_attempts)
_ATTEMPTS = (
    select(
        _attempts.c.attempt,
        _attempts.c.worker_id,
        _workers.c.name.label("worker_name"),
        _attempts.c.started_at,
        _attempts.c.ended_at,
        _attempts.c.outcome,
        _attempts.c.error,
    )
    .select_from(_attempts.outerjoin(_workers, _workers.c.id == _attempts.c.worker_id))
    .where(_attempts.c.task_id == bindparam("task_id"))
    .order_by(_attempts.c.id)
)
# Who claims: the worker, if the caller is a member of its project, and the project's name.
_CLAIMER = (
    select(
        _workers.c.id,
        _workers.c.name,
        _workers.c.project_id,
        _projects.c.name.label("project_name"),
    )
    .select_from(_workers.join(_projects, _projects.c.id == _workers.c.project_id))
    .where(
        _workers.c.id == bindparam("worker_id"),
        _workers.c.project_id.in_(
            select(_members.c.project_id).where(_members.c.user_id == bindparam("user_id"))
        ),
    )
)

# What a new task refers to, checked in one round trip: the project, if the caller is a
# member (with its default max_attempts), and the assignee, if it is a worker of that project
# (NULL otherwise).
_NEW_TASK_REFS = (
    select(
        _projects.c.name.label("project_name"),
        _projects.c.max_attempts,
        _workers.c.name.label("assignee_name"),
    )
    .select_from(
        _projects.join(_members, _members.c.project_id == _projects.c.id).outerjoin(
            _workers,
            (_workers.c.id == bindparam("assignee_id")) & (_workers.c.project_id == _projects.c.id),
        )
    )
    .where(_projects.c.id == bindparam("project_id"), _members.c.user_id == bindparam("user_id"))
)
_INSERT = insert(_tasks).returning(_tasks.c.id)
# The whole writable row at once: one statement for every kind of change. Safe because the
# caller holds the row (see _ONE_LOCKED) and the version must still match.
_WRITE = (
    update(_tasks)
    .where(_tasks.c.id == bindparam("task_id"), _tasks.c.version == bindparam("expected"))
    .values(
        {
            **{name: bindparam(f"new_{name}") for name in (*WRITABLE, "updated_at")},
            "version": _tasks.c.version + 1,
        }
    )
    .returning(_tasks.c.version)
)
# A batch of completions: one statement, executed for each locked task (its version known).
_FINISH = (
    update(_tasks)
    .where(_tasks.c.id == bindparam("task_id"), _tasks.c.version == bindparam("expected"))
    .values(
        status=bindparam("new_status"),
        result=bindparam("new_result"),
        lease_expires_at=None,
        updated_at=bindparam("now"),
        version=_tasks.c.version + 1,
    )
)
_DELETE = delete(_tasks).where(
    _tasks.c.id == bindparam("task_id"), _tasks.c.version == bindparam("expected")
)


@functools.cache
def _list_statement(project: bool, status: bool, assignee: bool, after: bool) -> Select[Any]:
    """``GET /tasks`` with the filters that are present; at most 16 statements per process."""
    statement = _READ.where(_VISIBLE).order_by(_tasks.c.id).limit(bindparam("limit"))
    if project:
        statement = statement.where(_tasks.c.project_id == bindparam("project_id"))
    if status:
        statement = statement.where(_tasks.c.status == bindparam("status"))
    if assignee:
        statement = statement.where(_tasks.c.assignee_id == bindparam("assignee_id"))
    if after:
        statement = statement.where(_tasks.c.id > bindparam("after_id"))
    return statement


def _task_read(row: Row[Any], project: Ref | None = None, assignee: Ref | None = None) -> TaskRead:
    """The task of *row*; *project* and *assignee* when the row does not name them."""
    if project is None:
        project = Ref(id=row.project_id, name=row.project_name)
        if row.assignee_id is not None:
            assignee = Ref(id=row.assignee_id, name=row.assignee_name)
    return TaskRead(
        id=row.id,
        project_id=row.project_id,
        title=row.title,
        description=row.description,
        status=row.status,
        priority=row.priority,
        assignee=assignee,
        project=project,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        lease_expires_at=row.lease_expires_at,
        payload=row.payload,
        result=row.result,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        run_after=row.run_after,
        claimed_at=row.claimed_at,
        last_error=row.last_error,
    )


@dataclass(frozen=True, slots=True)
class Claimer:
    """A worker about to claim, and its project."""

    worker: Ref
    project: Ref


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """An attempt whose lease ran out; its task is still locked and in progress."""

    task_id: int
    version: int
    worker_id: int | None
    attempt: int
    max_attempts: int
    started_at: datetime
    lease_expired_at: datetime


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """The optional filters of ``GET /tasks``."""

    project_id: int | None = None
    status: TaskStatus | None = None
    assignee_id: int | None = None


class TaskRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def _rows(self, statement: Any, params: Mapping[str, Any] | list[dict[str, Any]]) -> Any:
        # Core statements run on the session's connection: same transaction, no ORM layer.
        return await (await self.session.connection()).execute(statement, params)

    async def visible(self, task_id: int, user_id: int, *, lock: bool = False) -> TaskRead | None:
        """The task, if *user_id* is a member of its project; ``lock`` holds its row."""
        params = {"task_id": task_id, "user_id": user_id}
        row = (await self._rows(_ONE_LOCKED if lock else _ONE, params)).first()
        return None if row is None else _task_read(row)

    async def list_visible(
        self, user_id: int, filters: TaskFilters, after_id: int | None, limit: int
    ) -> list[TaskRead]:
        """The caller's tasks in id order, filtered, after *after_id*, at most *limit*."""
        values = {
            "project_id": filters.project_id,
            "status": filters.status,
            "assignee_id": filters.assignee_id,
            "after_id": after_id,
        }
        present = {name: value for name, value in values.items() if value is not None}
        statement = _list_statement(*(name in present for name in values))
        rows = await self._rows(statement, {"user_id": user_id, "limit": limit, **present})
        return [_task_read(row) for row in rows]

    async def new_task_refs(
        self, project_id: int, user_id: int, assignee_id: int | None
    ) -> tuple[str, int, str | None] | None:
        """(project name, its max_attempts, assignee name) for a new task; None if the project
        is not visible.

        The assignee name is None when there is no assignee or it is not a worker of the
        project.
        """
        params = {"project_id": project_id, "user_id": user_id, "assignee_id": assignee_id}
        row = (await self._rows(_NEW_TASK_REFS, params)).first()
        return None if row is None else (row.project_name, row.max_attempts, row.assignee_name)

    async def insert(self, values: Mapping[str, Any]) -> int:
        """Insert a task from all of its column values but the id; the new id."""
        row = (await self._rows(_INSERT, values)).one()
        return int(row.id)

    async def write(self, task: TaskRead, values: Mapping[str, Any]) -> int | None:
        """Set the `WRITABLE` columns and ``updated_at`` of *task*, if still at its version.

        ``UPDATE ... SET version = version + 1 WHERE id = :id AND version = :v``: of two
        writers that read the same version, exactly one changes the row. Returns the new
        version, or None when the version moved on (or the row is gone).
        """
        params = {f"new_{name}": value for name, value in values.items()}
        params.update(task_id=task.id, expected=task.version)
        row = (await self._rows(_WRITE, params)).first()
        return None if row is None else int(row.version)

    async def visible_many(self, task_ids: list[int], user_id: int) -> list[TaskRead]:
        """Those of the tasks whose project *user_id* is a member of, rows locked, by id."""
        params = {"task_ids": task_ids, "user_id": user_id}
        return [_task_read(row) for row in await self._rows(_MANY_LOCKED, params)]

    async def finish_many(self, finished: list[dict[str, Any]], now: datetime) -> None:
        """Set status and result of locked tasks: each ``{"task_id", "expected",
        "new_status", "new_result"}``; each gets version ``expected + 1``."""
        await self._rows(_FINISH, [{**values, "now": now} for values in finished])

    async def delete(self, task: TaskRead) -> bool:
        result = await self._rows(_DELETE, {"task_id": task.id, "expected": task.version})
        return bool(result.rowcount == 1)

    async def claimer(self, worker_id: int, user_id: int) -> Claimer | None:
        """The worker and its project, if *user_id* is a member of that project."""
        params = {"worker_id": worker_id, "user_id": user_id}
        row = (await self._rows(_CLAIMER, params)).first()
        if row is None:
            return None
        return Claimer(
            worker=Ref(id=row.id, name=row.name),
            project=Ref(id=row.project_id, name=row.project_name),
        )

    async def claim(
        self, claimer: Claimer, limit: int, now: datetime, lease_expires_at: datetime
    ) -> list[TaskRead]:
        """Claim up to *limit* of the project's due pending tasks for the worker, best first.

        One statement: the claimed tasks are in progress, held by the worker until
        *lease_expires_at*, with one attempt more and a new version each.
        """
        params = {
            "claim_project_id": claimer.project.id,
            "now": now,
            "limit": limit,
            "claim_worker_id": claimer.worker.id,
            "claim_lease": lease_expires_at,
        }
        rows = (await self._rows(_CLAIM, params)).all()
        # RETURNING follows no ORDER BY: put them back in claim order.
        rows.sort(key=lambda row: (-row.priority, row.run_after, row.id))
        return [_task_read(row, claimer.project, claimer.worker) for row in rows]

    async def expired_leases(self, project_id: int, now: datetime) -> list[ExpiredLease]:
        """The project's tasks in progress whose lease ran out before *now* (at most 100),
        locked; rows locked by others are skipped."""
        rows = await self._rows(_EXPIRED, {"project_id": project_id, "now": now})
        return [
            ExpiredLease(
                task_id=row.id,
                version=row.version,
                worker_id=row.assignee_id,
                attempt=row.attempts,
                max_attempts=row.max_attempts,
                # Tasks put in progress by hand before the queue existed have no claim time.
                started_at=row.claimed_at or row.lease_expires_at,
                lease_expired_at=row.lease_expires_at,
            )
            for row in rows
        ]

    async def release(self, releases: list[dict[str, Any]], now: datetime) -> None:
        """Give back locked tasks whose lease expired: each ``{"task_id", "expected",
        "new_status", "new_run_after", "new_last_error"}``."""
        await self._rows(_RELEASE, [{**release, "now": now} for release in releases])

    async def record_attempts(self, attempts: list[dict[str, Any]]) -> None:
        """Keep attempts that did not complete (`TaskAttempt` columns but the id)."""
        await self._rows(_INSERT_ATTEMPT, attempts)

    async def attempts(self, task_id: int) -> list[AttemptRead]:
        """The task's failed and expired attempts, oldest first (visibility checked before)."""
        rows = await self._rows(_ATTEMPTS, {"task_id": task_id})
        return [
            AttemptRead(
                attempt=row.attempt,
                worker=None
                if row.worker_id is None
                else Ref(id=row.worker_id, name=row.worker_name),
                started_at=row.started_at,
                ended_at=row.ended_at,
                outcome=row.outcome,
                error=row.error,
            )
            for row in rows
        ]
