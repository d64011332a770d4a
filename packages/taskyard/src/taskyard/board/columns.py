"""A project's board: one column per task status, each a keyset page of the task listing.

The columns are read through `TaskService.list_visible`, the query behind ``GET /tasks``, with
the project and status as filters. The board refreshes itself by polling: the client sends
the fingerprint of what it shows and gets ``204 No Content`` while nothing changed, so an
idle board costs a few reads and never disturbs focus or scroll.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sessionwise import Session
from taskyard.pagination import CursorCodec
from taskyard.tasks.models import TaskStatus
from taskyard.tasks.repository import TaskFilters
from taskyard.tasks.schemas import TaskRead
from taskyard.tasks.service import TaskService

__all__ = [
    "MAX_SHOWN",
    "PAGE_SIZE",
    "BoardFilters",
    "Column",
    "column_listing",
    "fingerprint",
    "load_column",
    "load_columns",
]

PAGE_SIZE = 20
MAX_SHOWN = 200  # a refresh re-reads what "load more" revealed, up to this many cards


@dataclass(frozen=True, slots=True)
class BoardFilters:
    """What the filter form chose: one assignee (a worker), one status, or everything."""

    assignee_id: int | None = None
    show: TaskStatus | None = None

    def query(self, **extra: str | int) -> str:
        """The filters (and *extra* parameters) as a URL query, ``?...`` or empty."""
        params: dict[str, str | int] = {}
        if self.assignee_id is not None:
            params["assignee"] = self.assignee_id
        if self.show is not None:
            params["show"] = self.show.value
        params.update(extra)
        return f"?{urlencode(params)}" if params else ""

    def statuses(self) -> list[TaskStatus]:
        return [self.show] if self.show is not None else list(TaskStatus)


@dataclass(slots=True)
class Column:
    status: TaskStatus
    tasks: list[TaskRead] = field(default_factory=list)
    next_cursor: str | None = None

    @property
    def shown(self) -> int:
        return len(self.tasks)


def column_listing(project_id: int, status: TaskStatus) -> str:
    # No ':' in a listing name: the cursor codec separates the name from the id with one.
    return f"board-{project_id}-{status.value}"


async def load_column(
    session: Session,
    user_id: int,
    project_id: int,
    status: TaskStatus,
    filters: BoardFilters,
    codec: CursorCodec,
    *,
    after_id: int | None = None,
    limit: int = PAGE_SIZE,
) -> Column:
    task_filters = TaskFilters(
        project_id=project_id, status=status, assignee_id=filters.assignee_id
    )
    rows = await TaskService(session).list_visible(user_id, task_filters, after_id, limit + 1)
    column = Column(status=status, tasks=rows[:limit])
    if len(rows) > limit:
        column.next_cursor = codec.encode(column_listing(project_id, status), rows[limit - 1].id)
    return column


async def load_columns(
    session: Session,
    user_id: int,
    project_id: int,
    filters: BoardFilters,
    codec: CursorCodec,
    shown: Mapping[TaskStatus, int],
) -> list[Column]:
    """Every column the filters show, each as long as the client had it (*shown*)."""
    columns = []
    for status in filters.statuses():
        limit = min(max(shown.get(status, PAGE_SIZE), PAGE_SIZE), MAX_SHOWN)
        columns.append(
            await load_column(session, user_id, project_id, status, filters, codec, limit=limit)
        )
    return columns


def fingerprint(rendered: str) -> str:
    """What the poller sends back: equal fingerprints, nothing to redraw."""
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()[:20]
