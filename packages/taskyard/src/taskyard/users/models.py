"""Users and their API keys."""

from datetime import datetime

from sqlmodel import BigInteger, Column, Field, String

from taskyard.tables import TableModel
from taskyard.timestamps import UTCDateTime, utc_now

# No `from __future__ import annotations` in table modules: SQLModel reads the annotations
# at class creation to build columns and relationships.


class User(TableModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased, so the unique index makes emails unique case-insensitively.
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )


class ApiKey(TableModel, table=True):
    """An API key: only a SHA-256 hash of it is stored, found by its public ``key_id``."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    key_id: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    label: str = Field(default="", sa_column=Column(String(200), nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # With read replicas: the primary's WAL position after this key's last write (or after a
    # change that took access away from its user). Its reads go to a replica that has
    # replayed that far, else to the primary (taskyard.read_your_writes).
    read_after_lsn: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
