"""Board sessions: the server side of a board sign-in (taskyard.board.models).

Revision ID: v0005_board_sessions
Revises: v0004_task_queue
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0005_board_sessions"
down_revision: str | None = "v0004_task_queue"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "board_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_board_sessions_user_id_users",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name="fk_board_sessions_api_key_id_api_keys",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_board_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_board_sessions_token_hash"),
    )
    op.create_index("ix_board_sessions_user_id", "board_sessions", ["user_id"])
    op.create_index("ix_board_sessions_api_key_id", "board_sessions", ["api_key_id"])


def downgrade() -> None:
    op.drop_index("ix_board_sessions_api_key_id", table_name="board_sessions")
    op.drop_index("ix_board_sessions_user_id", table_name="board_sessions")
    op.drop_table("board_sessions")
