"""Board sessions: who is signed in to the board, kept on the server.

The browser holds a random token (in a signed cookie); only its SHA-256 is stored, so a copy of
this table opens no board. A session ends when it is signed out (the row is deleted), when it
expires, or when the API key it was opened with is revoked or deleted (the lookup joins the
live key, and ``ON DELETE CASCADE`` removes the row with the key or the user).
"""

from datetime import datetime

from sqlmodel import Column, Field, String

from taskyard.tables import TableModel
from taskyard.timestamps import UTCDateTime, utc_now

# No `from __future__ import annotations` in table modules: SQLModel reads the annotations.


class BoardSession(TableModel, table=True):
    __tablename__ = "board_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    api_key_id: int = Field(foreign_key="api_keys.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
