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
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, delete, func, insert, select, update

from sessionwise import Session
from taskyard.api_types import Ref
from taskyard.projects.models import Project, ProjectMember
from taskyard.tables import table_of
from taskyard.tasks.models import Task, TaskStatus
from taskyard.tasks.schemas import TaskRead
from taskyard.workers.models import Worker

__all__ = ["WRITABLE", "TaskFilters", "TaskRepository"]

_tasks, _projects, _workers = table_of(Task), table_of(Project), table_of(Worker)
_members = table_of(ProjectMember)

WRITABLE = ("title", "description", "status", "priority", "assignee_id", "lease_expires_at")
"""The columns a change may set; `TaskRepository.write` sets all of them."""

_COLUMNS = (
    *(
        _tasks.c[name]
        for name in (
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
        )
    ),
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


_CLAIM_ORDER = (_tasks.c.priority.desc(), _tasks.c.created_at, _tasks.c.id)


def _next_claimable(*, expired: bool) -> Select[Any]:
    # Best first: highest priority, then oldest. Pending tasks come off ix_tasks_claim_order
    # in that order, so PostgreSQL stops at the first unlocked row; tasks in progress are
    # found by their lease (ix_tasks_leases), and only the expired ones are sorted. (One
    # statement with "pending OR lease expired" sorted the project's whole backlog instead:
    # ~45 ms per claim with 20,000 pending tasks.)
    claimable: ColumnElement[bool]
    if expired:
        claimable = (_tasks.c.status == TaskStatus.IN_PROGRESS) & (
            _tasks.c.lease_expires_at < bindparam("now")
        )
    else:
        claimable = _tasks.c.status == TaskStatus.PENDING
    # SKIP LOCKED: concurrent claimers each take a different row without waiting
    # (PostgreSQL docs, SELECT, "The Locking Clause").
    return (
        _READ.where(_tasks.c.project_id == bindparam("project_id"), claimable)
        .order_by(*_CLAIM_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True, of=_tasks)
    )


_NEXT_PENDING = _next_claimable(expired=False)
_NEXT_EXPIRED = _next_claimable(expired=True)
# When the project's next task becomes claimable by time alone: the earliest lease still
# running (off ix_tasks_leases). Only future moments: an expired lease that the claim skipped
# is locked by another claim, which takes it or, rolling back, leaves it for the next one.
_NEXT_MOMENT = select(func.min(_tasks.c.lease_expires_at)).where(
    _tasks.c.project_id == bindparam("project_id"),
    _tasks.c.status == TaskStatus.IN_PROGRESS,
    _tasks.c.lease_expires_at >= bindparam("now"),
)

# What a new task refers to, checked in one round trip: the project, if the caller is a
# member, and the assignee, if it is a worker of that project (NULL otherwise).
_NEW_TASK_REFS = (
    select(_projects.c.name.label("project_name"), _workers.c.name.label("assignee_name"))
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


def _task_read(row: Row[Any]) -> TaskRead:
    return TaskRead(
        id=row.id,
        project_id=row.project_id,
        title=row.title,
        description=row.description,
        status=row.status,
        priority=row.priority,
        assignee=(
            None if row.assignee_id is None else Ref(id=row.assignee_id, name=row.assignee_name)
        ),
        project=Ref(id=row.project_id, name=row.project_name),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        lease_expires_at=row.lease_expires_at,
    )


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """The optional filters of ``GET /tasks``."""

    project_id: int | None = None
    status: TaskStatus | None = None
    assignee_id: int | None = None


class TaskRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def _rows(self, statement: Any, params: Mapping[str, Any]) -> Any:
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
    ) -> tuple[str, str | None] | None:
        """(project name, assignee name) for a new task; None if the project is not visible.

        The assignee name is None when there is no assignee or it is not a worker of the
        project.
        """
        params = {"project_id": project_id, "user_id": user_id, "assignee_id": assignee_id}
        row = (await self._rows(_NEW_TASK_REFS, params)).first()
        return None if row is None else (row.project_name, row.assignee_name)

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

    async def delete(self, task: TaskRead) -> bool:
        result = await self._rows(_DELETE, {"task_id": task.id, "expected": task.version})
        return bool(result.rowcount == 1)

    async def next_claimable(self, project_id: int, now: datetime) -> TaskRead | None:
        """The project's best claimable task, row-locked; rows locked by others are skipped.

        Claimable: pending, or in progress with an expired lease; best is highest priority,
        then oldest. The best of each kind is locked, and the better one returned (the other
        stays locked until this transaction ends, a few milliseconds). On SQLite, which has
        no row locks and ignores the clause, the IMMEDIATE write transaction makes the
        select-then-update atomic instead.
        """
        pending = (await self._rows(_NEXT_PENDING, {"project_id": project_id})).first()
        params = {"project_id": project_id, "now": now}
        expired = (await self._rows(_NEXT_EXPIRED, params)).first()
        candidates = [row for row in (pending, expired) if row is not None]
        if not candidates:
            return None
        best = min(candidates, key=lambda row: (-row.priority, row.created_at, row.id))
        return _task_read(best)

    async def claimable_at(self, project_id: int, now: datetime) -> datetime | None:
        """The next moment a task of the project becomes claimable by time alone, if any."""
        params = {"project_id": project_id, "now": now}
        # min() keeps its argument's type: an aware UTC datetime on both backends.
        moment: datetime | None = (await self._rows(_NEXT_MOMENT, params)).scalar()
        return moment
