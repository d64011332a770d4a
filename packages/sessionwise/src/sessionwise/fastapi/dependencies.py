"""FastAPI adapter: one session per request, committed before the response is sent.

FastAPI runs the exit code of a ``yield`` dependency *after* the response was sent unless the
dependency has ``scope="function"`` (FastAPI >= 0.121, "Dependencies with yield" / "scope"):
with the default, a commit that fails cannot change a 2xx that is already on the wire. The
dependencies here use the function scope, so the commit happens after the endpoint (and its
response serialization) and before a single byte goes out; a failed commit becomes the
response.

**One connection per request.** A request holds at most one session of each `Database`, so
at most one pooled connection of its pool. All write-session dependencies of one Database
in one request (``SessionDep``, ``AsyncSessionDep``, ``database_dependencies(db).session``)
are the same session. A read-session dependency is a session of its own (``READ ONLY`` on
PostgreSQL, DEFERRED on SQLite) unless the route also needs the write session of the same
Database somewhere in its dependency tree: then it *is* the request's write session. Two
sessions would hold two connections at once, and under load every request would hold one
and wait for the second until ``pool_timeout`` (issue 17.1: 190 of 200 requests answered 503
on a pool of 5). Sharing is the only choice that needs one connection without changing what
the code means: the reads run in the request's transaction, see its own writes, and commit
or roll back with it (a read session could not be released before the write session starts:
both live until the endpoint returns). Whether a route needs the write session is read once
per route from ``request.scope["route"].dependant`` and cached; the per-request cost is two
dictionary lookups. `app.dependency_overrides` that add a write session to a route which had
none are not seen by that walk (the read then has a session of its own).

Database failures propagate from here as the exceptions they are; the exception handlers of
`sessionwise.fastapi.errors` answer them, on these routes and on every other alike. One
error is unwrapped so that it names its cause: a relationship that response serialization tried
to lazy-load surfaces as the `LazyLoadError` naming ``Model.attribute``, not as the generic
``ResponseValidationError`` pydantic makes of it. And a request whose session ends while a
result of ``session.stream()`` is still unread fails with `OpenStreamError` before the
response starts: a ``StreamingResponse`` reading it afterwards would send a truncated body
(issue 17.2); `sessionwise.fastapi.SessionStreamingResponse` is the way to stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import ResponseValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise.database import Database
from sessionwise.exceptions import DatabaseStateError, OpenStreamError
from sessionwise.fastapi.errors import install_error_handlers_late
from sessionwise.fastapi.routes import route_template
from sessionwise.guards import SESSION_RECORD_KEY, open_streams, refused_lazy_load
from sessionwise.metrics.sessions import SESSION_LABEL_KEY
from sessionwise.session_class import Session

__all__ = [
    "AsyncReadSessionDep",
    "AsyncSessionDep",
    "DatabaseDep",
    "DatabaseDependencies",
    "ReadSessionDep",
    "SessionDep",
    "database_dependencies",
    "get_database",
]


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


# -- which sessions a route needs ---------------------------------------------------------

# The write-session dependencies mark themselves with the Database they serve (_APP: the
# app's own, resolved through get_database, so that dependency_overrides apply).
_WRITES_ATTRIBUTE = "_sessionwise_writes"
_APP = object()
# Per request, in the ASGI scope: Database -> its write session in this request.
_REQUEST_SESSIONS = "sessionwise.request_sessions"
# id(route dependant) -> (dependant, the Databases its tree takes a write session of).
_route_writes: dict[int, tuple[Dependant, frozenset[object]]] = {}


def _writes_of(dependant: Dependant) -> frozenset[object]:
    targets: set[object] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        target = getattr(current.call, _WRITES_ATTRIBUTE, None)
        if target is not None:
            targets.add(target)
        stack.extend(current.dependencies)
    return frozenset(targets)


def _route_takes_write_session(request: Request, db: Database, *, app_bound: bool) -> bool:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if not isinstance(dependant, Dependant):
        return False
    cached = _route_writes.get(id(dependant))
    if cached is None or cached[0] is not dependant:
        cached = (dependant, _writes_of(dependant))
        _route_writes[id(dependant)] = cached
    targets = cached[1]
    if db in targets:
        return True
    if _APP not in targets:
        return False
    # The app's write session: the same Database as this read session's?
    return app_bound or db is getattr(request.app.state, "sessionwise_database", None)


# -- the sessions -------------------------------------------------------------------------


def _label(request: Request, session: AsyncSession) -> None:
    # What the slow-session warning names (sessionwise.metrics.sessions): the method and the
    # route's template, never the path, which carries ids and whatever else a client sent.
    if SESSION_RECORD_KEY in session.info:
        template = route_template(request.scope) or "unmatched route"
        session.info[SESSION_LABEL_KEY] = f"{request.method} {template}"


@contextmanager
def _lazy_loads_unwrapped(session: AsyncSession) -> Iterator[None]:
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


def _refuse_open_streams(session: AsyncSession) -> None:
    if open_streams(session):
        raise OpenStreamError(
            "the request's session ended (SessionDep and ReadSessionDep commit or roll back "
            "before the response is sent) while a result of session.stream() was still "
            "unread: a StreamingResponse reading it now would send a truncated body. Let the "
            "response own the session instead: `return SessionStreamingResponse(db, rows)` "
            "from sessionwise.fastapi, with `async def rows(session): ...` streaming inside."
        )


@asynccontextmanager
async def _write_session(request: Request, db: Database) -> AsyncIterator[Session]:
    install_error_handlers_late(request)  # an app that skipped the lifespan (tests)
    sessions: dict[Database, Session] = request.scope.setdefault(_REQUEST_SESSIONS, {})
    shared = sessions.get(db)
    if shared is not None:
        # Another dependency of this request opened it, and closes it: it entered first, so
        # FastAPI exits it last (after this one), with the commit.
        yield shared
        return
    async with db.session() as session:
        _label(request, session)
        sessions[db] = session
        try:
            with _lazy_loads_unwrapped(session):
                yield session
            _refuse_open_streams(session)
        finally:
            del sessions[db]


@asynccontextmanager
async def _read_session_of(
    request: Request, db: Database, *, app_bound: bool
) -> AsyncIterator[Session]:
    install_error_handlers_late(request)
    if _route_takes_write_session(request, db, app_bound=app_bound) or db in request.scope.get(
        _REQUEST_SESSIONS, ()
    ):
        async with _write_session(request, db) as session:
            yield session
        return
    async with db.read_session() as session:
        _label(request, session)
        with _lazy_loads_unwrapped(session):
            yield session
        _refuse_open_streams(session)


def _check_sqlmodel_session(db: Database, alias: str, plain_alias: str) -> None:
    session_class = db.session_factory.class_
    if not hasattr(session_class, "exec"):
        raise TypeError(
            f"{alias} is typed as SQLModel's AsyncSession, but {db!r} makes plain "
            f"SQLAlchemy sessions ({session_class.__mro__[1].__name__}, no exec()): declare "
            f"the parameter as {plain_alias} (sessionwise.fastapi), or create the Database "
            "with SQLModel's session class"
        )


async def _session(request: Request, db: DatabaseDep) -> AsyncIterator[Session]:
    _check_sqlmodel_session(db, "SessionDep", "AsyncSessionDep")
    async with _write_session(request, db) as session:
        yield session


async def _read_session(request: Request, db: DatabaseDep) -> AsyncIterator[Session]:
    _check_sqlmodel_session(db, "ReadSessionDep", "AsyncReadSessionDep")
    async with _read_session_of(request, db, app_bound=True) as session:
        yield session


async def _async_session(request: Request, db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    async with _write_session(request, db) as session:
        yield session


async def _async_read_session(request: Request, db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    async with _read_session_of(request, db, app_bound=True) as session:
        yield session


for _write_dependency in (_session, _async_session):
    setattr(_write_dependency, _WRITES_ATTRIBUTE, _APP)


SessionDep = Annotated[Session, Depends(_session, scope="function")]
"""The request's session (SQLModel's `AsyncSession`, with ``exec()``).

Committed after the endpoint returns, before the response is sent. A Database made with
``session_class=sqlalchemy.ext.asyncio.AsyncSession`` needs `AsyncSessionDep` instead (a
route declaring this one fails with a `TypeError` saying so).
"""

ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]
"""A read-only session (READ ONLY on PostgreSQL), typed as SQLModel's `AsyncSession`.

In a route that also takes the write session (`SessionDep`, anywhere in its dependencies),
it is that same session: one connection per request (see the module docstring).
"""

AsyncSessionDep = Annotated[AsyncSession, Depends(_async_session, scope="function")]
"""`SessionDep` typed as plain SQLAlchemy's `AsyncSession`, for either session class."""

AsyncReadSessionDep = Annotated[AsyncSession, Depends(_async_read_session, scope="function")]
"""`ReadSessionDep` typed as plain SQLAlchemy's `AsyncSession`, for either session class."""


# -- the dependencies of a chosen Database ----------------------------------------------------


@dataclass(frozen=True)
class DatabaseDependencies:
    """The request dependencies of one chosen `Database` (see `database_dependencies`).

    Each attribute is a ``Depends(...)`` marker, to put in an ``Annotated`` alias with the
    type the route should see; the session markers carry ``scope="function"`` already.

    Attributes:
        database: The `Database` itself: ``Annotated[Database, deps.database]``.
        session: The request's write session of it, committed before the response is sent:
            ``Annotated[AsyncSession, deps.session]``.
        read_session: A read-only session of it (the write session instead when the route
            also takes that): ``Annotated[AsyncSession, deps.read_session]``.
    """

    database: Any
    session: Any
    read_session: Any


def database_dependencies(db: Database[Any]) -> DatabaseDependencies:
    """Session dependencies bound to *db* rather than to the app's `Database`.

    For an app with several databases: `SessionDep` and friends serve the Database whose
    lifespan runs the app; these serve *db* (started by its own lifespan), with the same
    commit point, error answers, lazy-load unwrapping, stream check and one connection (of
    *db*'s pool) per request.

    Example:
        >>> analytics = Database(ANALYTICS_URL, name="analytics")
        >>> analytics_deps = database_dependencies(analytics)
        >>> AnalyticsSession = Annotated[AsyncSession, analytics_deps.session]
        >>> @app.post("/events")
        ... async def record(session: AnalyticsSession) -> None: ...
    """

    async def database() -> Database[Any]:
        return db

    async def session(request: Request) -> AsyncIterator[AsyncSession]:
        async with _write_session(request, db) as bound:
            yield bound

    async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with _read_session_of(request, db, app_bound=False) as bound:
            yield bound

    setattr(session, _WRITES_ATTRIBUTE, db)
    for function in (database, session, read_session):
        # Names that say which Database a dependency serves, in tracebacks and in errors.
        function.__qualname__ = f"database_dependencies({db!r}).{function.__name__}"
    return DatabaseDependencies(
        database=Depends(database),
        session=Depends(session, scope="function"),
        read_session=Depends(read_session, scope="function"),
    )
