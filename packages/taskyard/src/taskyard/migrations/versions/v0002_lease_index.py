"""An index for finding expired leases without reading every task in progress.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_IN_PROGRESS = sa.text("status = 'in_progress'")


def upgrade() -> None:
    op.create_index(
        "ix_tasks_leases",
        "tasks",
        ["project_id", "lease_expires_at"],
        postgresql_where=_IN_PROGRESS,
        sqlite_where=_IN_PROGRESS,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_leases", table_name="tasks")
