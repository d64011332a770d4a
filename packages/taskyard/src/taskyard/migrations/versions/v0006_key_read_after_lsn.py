"""API keys: the WAL position their reads must have replayed to (read replicas, issue 12).

Revision ID: v0006_key_read_after_lsn
Revises: v0005_board_sessions
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0006_key_read_after_lsn"
down_revision: str | None = "v0005_board_sessions"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no row and takes only a brief lock.
    op.add_column("api_keys", sa.Column("read_after_lsn", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "read_after_lsn")
