"""Where a `Database` is published on an app: ``app.state``, by name, one per name.

The unnamed `Database` is ``app.state.sessionwise_database`` (what the FastAPI adapter's
``get_database`` reads); a named one, ``Database(url, name="analytics")``, is
``app.state.sessionwise_databases["analytics"]``. Entering a second, different `Database` under
a name that is taken fails at startup instead of silently re-pointing every session dependency
at it (issue 17, finding 4). Framework-free: any object with a ``state`` attribute will do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sessionwise.exceptions import DatabaseStateError

if TYPE_CHECKING:
    from sessionwise.database import Database

__all__ = [
    "DATABASES_ATTRIBUTE",
    "DEFAULT_ATTRIBUTE",
    "pointed_at",
    "published",
    "published_database",
]

DEFAULT_ATTRIBUTE = "sessionwise_database"
DATABASES_ATTRIBUTE = "sessionwise_databases"


def published_database(app: Any, name: str | None = None) -> Database[Any] | None:
    """The `Database` published on *app* under *name* (None: the unnamed one), if any."""
    state = getattr(app, "state", None)
    if name is None:
        return getattr(state, DEFAULT_ATTRIBUTE, None)
    named: dict[str, Database[Any]] = getattr(state, DATABASES_ATTRIBUTE, None) or {}
    return named.get(name)


def _put(app: Any, name: str | None, db: Database[Any] | None) -> None:
    state = app.state
    if name is None:
        if db is None:
            if hasattr(state, DEFAULT_ATTRIBUTE):
                delattr(state, DEFAULT_ATTRIBUTE)
        else:
            setattr(state, DEFAULT_ATTRIBUTE, db)
        return
    named: dict[str, Database[Any]] | None = getattr(state, DATABASES_ATTRIBUTE, None)
    if named is None:
        named = {}
        setattr(state, DATABASES_ATTRIBUTE, named)
    if db is None:
        named.pop(name, None)
    else:
        named[name] = db


@contextmanager
def published(app: Any, db: Database[Any]) -> Iterator[None]:
    """Publish *db* on ``app.state`` under its name while the block runs, then remove it.

    Publishing the same `Database` again (an outer lifespan already did) is a no-op, and the
    inner exit leaves it in place. An app without ``state`` is left alone.

    Raises:
        DatabaseStateError: another `Database` is already published under that name.
    """
    if getattr(app, "state", None) is None:
        yield
        return
    current = published_database(app, db.name)
    if current is db:
        yield
        return
    if current is not None:
        where = (
            "app.state.sessionwise_database"
            if db.name is None
            else f"app.state.sessionwise_databases[{db.name!r}]"
        )
        raise DatabaseStateError(
            f"{where} is already {current!r}; entering the lifespan of {db!r} would silently "
            "re-point every session dependency at it. Give each further Database a name, "
            '`Database(url, name="analytics")` (published as '
            'app.state.sessionwise_databases["analytics"]), and take its sessions from it '
            "explicitly."
        )
    _put(app, db.name, db)
    try:
        yield
    finally:
        if published_database(app, db.name) is db:
            _put(app, db.name, None)


@contextmanager
def pointed_at(app: Any, db: Database[Any]) -> Iterator[None]:
    """Put *db* under its name on ``app.state`` while the block runs, whatever was there.

    For the test plugin, which points an app whose lifespan made its own `Database` at the
    isolated one; what was published before is put back afterwards.
    """
    saved = published_database(app, db.name)
    _put(app, db.name, db)
    try:
        yield
    finally:
        _put(app, db.name, saved)
