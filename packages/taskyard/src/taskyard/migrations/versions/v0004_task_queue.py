"""The queue: payloads and results, attempts with backoff, dead tasks, scheduled work.

Tasks gain ``payload`` and ``result`` (JSON), ``attempts`` / ``max_attempts``, ``run_after``
(when the task is claimable; existing tasks: since their creation), ``claimed_at`` and
``last_error``; projects a default ``max_attempts``; ``task_attempts`` keeps every attempt
that failed or whose lease expired. The claim index orders by ``run_after`` instead of
``created_at``, so that claims skip tasks not yet due inside the index.

The status ``dead`` needs no DDL: statuses are stored as VARCHAR(16) without a constraint.

Revision ID: v0004_task_queue
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0004_task_queue"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_IN_PROGRESS = sa.text("status = 'in_progress'")
_JSON = sa.JSON(none_as_null=True)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _drop_claim_indexes() -> None:
    # Dropped around the batch below: SQLite rebuilds the table there, and the partial
    # ix_tasks_leases would not survive the rebuild with its WHERE clause.
    op.drop_index("ix_tasks_claim_order", table_name="tasks")
    op.drop_index("ix_tasks_leases", table_name="tasks")


def _create_lease_index() -> None:
    op.create_index(
        "ix_tasks_leases",
        "tasks",
        ["project_id", "lease_expires_at"],
        postgresql_where=_IN_PROGRESS,
        sqlite_where=_IN_PROGRESS,
    )


def upgrade() -> None:
    op.add_column(
        "projects", sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3")
    )
    _drop_claim_indexes()
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("payload", _JSON, nullable=True))
        batch.add_column(sa.Column("result", _JSON, nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3")
        )
        batch.add_column(_timestamp("run_after", nullable=True))
        batch.add_column(_timestamp("claimed_at", nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    # Existing tasks have been claimable since they were created.
    op.execute(sa.text("UPDATE tasks SET run_after = created_at"))
    with op.batch_alter_table("tasks") as batch:
        # The server default: inserts in plain SQL that predate the column still work.
        batch.alter_column(
            "run_after",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        )
    op.create_index(
        "ix_tasks_claim_order",
        "tasks",
        ["project_id", "status", sa.literal_column("priority DESC"), "run_after", "id"],
    )
    _create_lease_index()
    op.create_table(
        "task_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        _timestamp("started_at"),
        _timestamp("ended_at"),
        sa.Column(
            "outcome",
            sa.Enum("failed", "expired", name="attempt_outcome", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_attempts_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_task_attempts_worker_id_workers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_attempts")),
    )
    op.create_index("ix_task_attempts_task_id_id", "task_attempts", ["task_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_task_attempts_task_id_id", table_name="task_attempts")
    op.drop_table("task_attempts")
    # Dead tasks have no status to go back to but the one a member gives up on: failed.
    op.execute(sa.text("UPDATE tasks SET status = 'failed' WHERE status = 'dead'"))
    _drop_claim_indexes()
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "last_error",
            "claimed_at",
            "run_after",
            "max_attempts",
            "attempts",
            "result",
            "payload",
        ):
            batch.drop_column(column)
    op.create_index(
        "ix_tasks_claim_order",
        "tasks",
        ["project_id", "status", sa.literal_column("priority DESC"), "created_at", "id"],
    )
    _create_lease_index()
    op.drop_column("projects", "max_attempts")
