"""Task reads as Core statements, built once: the rows go straight into `TaskRead`.

``GET /tasks/{id}`` and ``GET /tasks`` are the hottest calls. Loading ORM objects for them
(``Task`` with ``joinedload`` of its project and assignee, then copied into `TaskRead`) and
building the statement on every request cost more CPU than everything else in the request
(bench/notes/profile.md). These statements select exactly the columns of a `TaskRead`, take
every value as a bound parameter, and are built once per process (per combination of list
filters), so SQLAlchemy finds them in its compiled cache without rebuilding anything.

Visibility is part of every statement: a task is returned only if the caller is a member of
its project (``:user_id``).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Row, Select, bindparam, select

from sessionwise import Session
from taskyard.api_types import Ref
from taskyard.projects.models import Project, ProjectMember
from taskyard.tables import table_of
from taskyard.tasks.models import Task
from taskyard.tasks.schemas import TaskRead
from taskyard.workers.models import Worker

__all__ = ["list_tasks", "read_task"]

_tasks, _projects, _workers = table_of(Task), table_of(Project), table_of(Worker)
_members = table_of(ProjectMember)

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

_READ_ONE = (
    select(*_COLUMNS).select_from(_FROM).where(_tasks.c.id == bindparam("task_id"), _VISIBLE)
)


@functools.cache
def _list_statement(project: bool, status: bool, assignee: bool, after: bool) -> Select[Any]:
    """``GET /tasks`` with the filters that are present; at most 16 statements per process."""
    statement = (
        select(*_COLUMNS)
        .select_from(_FROM)
        .where(_VISIBLE)
        .order_by(_tasks.c.id)
        .limit(bindparam("limit"))
    )
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
        assignee=None
        if row.assignee_id is None
        else Ref(id=row.assignee_id, name=row.assignee_name),
        project=Ref(id=row.project_id, name=row.project_name),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        lease_expires_at=row.lease_expires_at,
    )


async def read_task(session: Session, task_id: int, user_id: int) -> TaskRead | None:
    """The task as the API shows it, if *user_id* is a member of its project."""
    connection = await session.connection()  # Core rows: no ORM loading to go through
    result = await connection.execute(_READ_ONE, {"task_id": task_id, "user_id": user_id})
    row = result.first()
    return None if row is None else _task_read(row)


async def list_tasks(
    session: Session,
    user_id: int,
    *,
    project_id: int | None,
    status: str | None,
    assignee_id: int | None,
    after_id: int | None,
    limit: int,
) -> list[TaskRead]:
    """The caller's tasks in id order, filtered, after *after_id*, at most *limit*."""
    params: dict[str, Any] = {"user_id": user_id, "limit": limit}
    filters = {
        "project_id": project_id,
        "status": status,
        "assignee_id": assignee_id,
        "after_id": after_id,
    }
    params.update((name, value) for name, value in filters.items() if value is not None)
    statement = _list_statement(
        project_id is not None, status is not None, assignee_id is not None, after_id is not None
    )
    result = await (await session.connection()).execute(statement, params)
    return [_task_read(row) for row in result]
