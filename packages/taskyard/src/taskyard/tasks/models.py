"""Tasks: the queue, and the record of their failed attempts."""

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy import JSON, ForeignKey, Index, Integer, text
from sqlmodel import Column, Enum, Field, Relationship, String, Text, col

from taskyard.projects.models import DEFAULT_MAX_ATTEMPTS
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
    DEAD = "dead"


class AttemptOutcome(enum.StrEnum):
    FAILED = "failed"
    EXPIRED = "expired"


# None is SQL NULL (no payload, no result), not the JSON text "null".
_JSON = JSON(none_as_null=True)


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
    payload: Any = Field(default=None, sa_column=Column(_JSON, nullable=True))
    result: Any = Field(default=None, sa_column=Column(_JSON, nullable=True))
    # Attempts started since the task was created or last retried; at max_attempts a failure
    # makes it dead.
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    max_attempts: int = Field(
        default=DEFAULT_MAX_ATTEMPTS,
        sa_column=Column(Integer, nullable=False, server_default=str(DEFAULT_MAX_ATTEMPTS)),
    )
    # When the task is (or became) claimable: its creation, its schedule, or its retry after a
    # backoff. Never NULL, so that it can order claims inside ix_tasks_claim_order.
    run_after: datetime = Field(
        default_factory=utc_now,
        # Also the default of Core inserts (the benchmark's seeds, bulk loads) and of plain SQL
        # ones that predate the column: due now.
        sa_column=Column(
            UTCDateTime(),
            nullable=False,
            default=utc_now,
            server_default=text("CURRENT_TIMESTAMP"),
        ),
    )
    claimed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    last_error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))

    project: "Project" = Relationship(sa_relationship_kwargs={"lazy": "raise"})
    assignee: Optional["Worker"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})


# The claim query: one project's due tasks, best first (priority DESC, longest due first).
# ``run_after <= now`` is checked on the index entries, so tasks not yet due are skipped
# without visiting their rows.
Index(
    "ix_tasks_claim_order",
    col(Task.project_id),
    col(Task.status),
    col(Task.priority).desc(),
    col(Task.run_after),
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


class TaskAttempt(TableModel, table=True):
    """An attempt that did not complete: who, when, and its error (a completed attempt is on
    the task itself: its assignee, ``claimed_at`` and result)."""

    __tablename__ = "task_attempts"
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(
        sa_column=Column(Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False)
    )
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    worker_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("workers.id", ondelete="SET NULL"), nullable=True),
    )
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ended_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    outcome: AttemptOutcome = Field(
        sa_column=Column(
            Enum(
                AttemptOutcome,
                name="attempt_outcome",
                native_enum=False,
                length=16,
                values_callable=enum_values,
            ),
            nullable=False,
        ),
    )
    error: str = Field(sa_column=Column(Text(), nullable=False))


# A task's attempts, in order.
Index("ix_task_attempts_task_id_id", col(TaskAttempt.task_id), col(TaskAttempt.id))
