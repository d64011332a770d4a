"""FastAPI adapter: one session per request, committed before the response is sent.

FastAPI runs the exit code of a ``yield`` dependency *after* the response was sent unless the
dependency has ``scope="function"`` (FastAPI >= 0.121, "Dependencies with yield" / "scope"):
with the default, a commit that fails cannot change a 2xx that is already on the wire. The
dependency here uses the function scope, so the commit happens after the endpoint (and its
response serialization) and before a single byte goes out; a failed commit becomes the
response.

Database failures propagate from here as the exceptions they are; the exception handlers of
`sessionwise.fastapi.errors` answer them, on these routes and on every other alike.

One error is unwrapped so that it names its cause: a relationship that response
serialization tried to lazy-load surfaces as the `LazyLoadError` naming ``Model.attribute``,
not as the generic ``ResponseValidationError`` pydantic makes of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import ResponseValidationError

from sessionwise.database import Database
from sessionwise.exceptions import DatabaseStateError
from sessionwise.guards import refused_lazy_load
from sessionwise.session_class import Session

__all__ = ["DatabaseDep", "ReadSessionDep", "SessionDep", "get_database"]


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
    async with db.session() as session:
        with _lazy_loads_unwrapped(session):
            yield session


async def _read_session(db: DatabaseDep) -> AsyncIterator[Session]:
    async with db.read_session() as session:
        with _lazy_loads_unwrapped(session):
            yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]
"""The request's session. Committed after the endpoint returns, before the response is sent."""

ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]
"""A read-only session for endpoints that only read (READ ONLY on PostgreSQL)."""
