"""FastAPI adapter: one session per request, committed before the response is sent.

FastAPI runs the exit code of a ``yield`` dependency *after* the response was sent unless the
dependency has ``scope="function"`` (FastAPI >= 0.121, "Dependencies with yield" / "scope"):
with the default, a commit that fails cannot change a 2xx that is already on the wire. The
dependency here uses the function scope, so the commit happens after the endpoint (and its
response serialization) and before a single byte goes out; a failed commit becomes the
response.

Database failures are turned into answers a client can act on:

* no connection within ``pool_timeout``, database unreachable, SQLite lock timeout,
  serialization conflict -> ``503`` with ``Retry-After``;
* ``statement_timeout`` -> ``504``;
* a constraint refusing the change -> ``409``.

Anything else propagates unchanged (a 500 is a bug to fix, not to hide). One is unwrapped so
that it names its cause: a relationship that response serialization tried to lazy-load
surfaces as the `LazyLoadError` naming ``Model.attribute``, not as the generic
``ResponseValidationError`` pydantic makes of it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import ResponseValidationError
from sqlalchemy.exc import SQLAlchemyError

from sessionwise.database import Database
from sessionwise.errors import Failure, classify
from sessionwise.exceptions import DatabaseStateError
from sessionwise.guards import refused_lazy_load
from sessionwise.session_class import Session

__all__ = ["DatabaseDep", "ReadSessionDep", "SessionDep", "get_database", "http_error_for"]

_STATUS = {
    Failure.POOL_EXHAUSTED: (503, "database busy: no connection became free in time"),
    Failure.UNAVAILABLE: (503, "database unavailable"),
    Failure.LOCKED: (503, "database busy: a write lock was not granted in time"),
    Failure.CONFLICT: (503, "transaction conflict with a concurrent request"),
    Failure.TIMEOUT: (504, "database statement timed out"),
    Failure.INTEGRITY: (409, "the change conflicts with existing data"),
}


async def get_database(request: Request) -> Database:
    """The `Database` whose lifespan runs this app (``app.state.sessionwise_database``).

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in a worker
    thread, a thread hop on every request for one attribute read.
    """
    db = getattr(request.app.state, "sessionwise_database", None)
    if not isinstance(db, Database):
        raise DatabaseStateError(
            "no Database on app.state: create the app with `FastAPI(lifespan=db.lifespan)` "
            "or enter `db.lifespan(app)` from your own lifespan"
        )
    return db


DatabaseDep = Annotated[Database, Depends(get_database)]


def http_error_for(error: BaseException, db: Database) -> HTTPException | None:
    """The HTTP answer for a database failure, or None when it is not one we can name."""
    failure = classify(error)
    if failure not in _STATUS:
        return None
    status, detail = _STATUS[failure]
    headers = None
    if status >= 500:
        headers = {"Retry-After": str(max(1, math.ceil(db.config.pool_timeout)))}
    return HTTPException(status_code=status, detail=detail, headers=headers)


@asynccontextmanager
async def _failures_as_http_errors(db: Database) -> AsyncIterator[None]:
    try:
        yield
    except (SQLAlchemyError, OSError) as error:
        http_error = http_error_for(error, db)
        if http_error is None:
            raise
        raise http_error from error


@contextmanager
def _lazy_loads_unwrapped(session: Session) -> Iterator[None]:
    # Pydantic reports any exception raised by an attribute read during response validation
    # as a "get_attribute_error" and FastAPI raises ResponseValidationError, which hides the
    # LazyLoadError (its type, and what except-clauses for MissingGreenlet would catch).
    try:
        yield
    except ResponseValidationError as error:
        lazy_load = refused_lazy_load(session)
        if lazy_load is None or not any(
            detail.get("type") == "get_attribute_error"
            and str(lazy_load) in str(detail.get("ctx", {}).get("error", ""))
            for detail in error.errors()
        ):
            raise
        raise lazy_load from error


async def _session(db: DatabaseDep) -> AsyncIterator[Session]:
    async with _failures_as_http_errors(db), db.session() as session:
        with _lazy_loads_unwrapped(session):
            yield session


async def _read_session(db: DatabaseDep) -> AsyncIterator[Session]:
    async with _failures_as_http_errors(db), db.read_session() as session:
        with _lazy_loads_unwrapped(session):
            yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]
"""The request's session. Committed after the endpoint returns, before the response is sent."""

ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]
"""A read-only session for endpoints that only read (READ ONLY on PostgreSQL)."""
