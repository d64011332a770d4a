"""Tasks: the queue."""

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Optional

from sqlalchemy import Index, text
from sqlmodel import Column, Enum, Field, Relationship, String, Text, col

from taskyard.tables import TableModel, enum_values
from taskyard.timestamps import UTCDateTime, utc_now

if TYPE_CHECKING:
    from taskyard.projects.models import Project
    from taskyard.workers.models import Worker


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Task(TableModel, table=True):
    __tablename__ = "tasks"
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", ondelete="CASCADE")
    title: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text(), nullable=False))
    status: TaskStatus = Field(
        default=TaskStatus.PENDING,
        sa_column=Column(
            Enum(
                TaskStatus,
                name="task_status",
                native_enum=False,
                length=16,
                values_callable=enum_values,
            ),
            nullable=False,
        ),
    )
    priority: int = Field(default=0)
    assignee_id: int | None = Field(
        default=None, foreign_key="workers.id", ondelete="SET NULL", index=True
    )
    version: int = Field(default=1)
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )

    project: "Project" = Relationship(sa_relationship_kwargs={"lazy": "raise"})
    assignee: Optional["Worker"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})


# The claim query: one project's claimable tasks, best first (priority DESC, oldest first).
Index(
    "ix_tasks_claim_order",
    col(Task.project_id),
    col(Task.status),
    col(Task.priority).desc(),
    col(Task.created_at),
    col(Task.id),
)
# Claims: the leases that may have expired, i.e. one project's tasks in progress, by expiry.
Index(
    "ix_tasks_leases",
    col(Task.project_id),
    col(Task.lease_expires_at),
    postgresql_where=text("status = 'in_progress'"),
    sqlite_where=text("status = 'in_progress'"),
)
# Listings: one project's tasks in id order (keyset pagination).
Index("ix_tasks_project_id_id", col(Task.project_id), col(Task.id))
