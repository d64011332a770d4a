"""The default session class: SQLModel's `AsyncSession`, with SQLAlchemy's ``execute()``.

SQLModel's session adds ``exec()`` and is a subclass of SQLAlchemy's, so it serves plain
`DeclarativeBase` models just as well, except for one thing: SQLModel marks ``execute()`` as
deprecated (``typing_extensions.deprecated``), which emits a ``DeprecationWarning`` on every
call, also from ``scalars()``, which calls ``execute()``, and types its result as
``Result[Any]``. For a SQLModel app that is a nudge towards ``exec()``; for plain SQLAlchemy
code, ``execute()`` is the documented API. So `Session` keeps SQLModel's class (``exec()``,
``isinstance`` checks, SQLModel's sync session) and takes ``execute()`` back from SQLAlchemy's
`AsyncSession`, typed as SQLAlchemy types it (``Result[tuple[Task]]`` for ``select(Task)``)
and without the warning (sessionwise issue 9, finding 6).

Without the ``sqlmodel`` extra, `Session` is a plain subclass of SQLAlchemy's `AsyncSession`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

try:
    from sqlmodel.ext.asyncio.session import AsyncSession as _Base
except ImportError:  # pragma: no cover - exercised by installs without the sqlmodel extra
    _Base = AsyncSession  # type: ignore[misc,assignment]


class Session(_Base):
    """SQLModel's `AsyncSession`, whose ``execute()`` is SQLAlchemy's, not deprecated.

    ``exec()`` works as in SQLModel; ``execute()``, ``scalars()`` and ``scalar()`` work as in
    SQLAlchemy, with SQLAlchemy's result types.
    """

    # SQLAlchemy's own method: its overloads type the result by the statement, and it carries
    # no deprecation (SQLModel's override only adds the warning, then calls it).
    execute = AsyncSession.execute


__all__ = ["Session"]
