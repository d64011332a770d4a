"""Plain SQLAlchemy, no SQLModel: the `Database` hands out SQLAlchemy's own `AsyncSession`.

``session_class=AsyncSession`` makes this a ``Database[AsyncSession]``: `db.session()` and
`db.read_session()` are typed as plain sessions, so ``mypy --strict`` (run over examples/ by
``make test``) rejects SQLModel-only calls such as ``session.exec(...)``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionwise import Database, DatabaseSettings

# BOOKMARKS_DB_URL, BOOKMARKS_DB_POOL_TIMEOUT, ...; no URL -> ConfigurationError.
db = Database(settings=DatabaseSettings(_env_prefix="BOOKMARKS_DB_"), session_class=AsyncSession)


class Base(DeclarativeBase):
    pass


class Bookmark(Base):
    __tablename__ = "bookmarks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(500), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))
