"""The default session class: SQLModel's `AsyncSession` when SQLModel is installed.

SQLModel's session adds ``exec()`` and is a subclass of SQLAlchemy's, so it serves plain
`DeclarativeBase` models just as well.
"""

from __future__ import annotations

try:
    from sqlmodel.ext.asyncio.session import AsyncSession as Session
except ImportError:  # pragma: no cover - exercised by installs without the sqlmodel extra
    from sqlalchemy.ext.asyncio import AsyncSession as Session  # type: ignore[assignment]

__all__ = ["Session"]
