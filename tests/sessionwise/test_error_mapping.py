"""Database failures are answered by their cause, alike on every route, visibly, overridably.

A FastAPI app over httpx's ASGITransport (500s as responses), against a real SQLite file and
the real PostgreSQL server. What is checked:

* an app's own ``OSError`` / ``TimeoutError`` is a 500, never a "database unavailable" 503;
* on SQLite the result code decides: a syntax error, a missing table or column is a 500, a
  UNIQUE violation a 409, a busy database a 503;
* the same failure gets the same answer whichever way the route reached the database
  (``AsyncSessionDep``, ``AsyncReadSessionDep``, ``DatabaseDep`` with ``run_transaction``, or
  ``db.session()`` with no sessionwise dependency);
* every mapped answer logs one WARNING naming the cause and the route, without SQL or
  parameters; the body carries neither;
* the app's own exception handlers take precedence;
* the handlers are installed by ``FastAPI(lifespan=db.lifespan)`` alone, served by uvicorn,
  and keep-alive clients get an HTTP answer to every request.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import uvicorn
import websockets.asyncio.client
import websockets.exceptions
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from sessionwise import Database, Failure
from sessionwise.fastapi import (
    AsyncReadSessionDep,
    AsyncSessionDep,
    DatabaseDep,
    FailureAnswer,
    install_error_handlers,
)
from tests.support.ports import free_port
from tests.support.waiting import wait_until

SECRET = "s3cret-value-7f"  # a parameter that must never reach a log record or a body
SHAPES = ("session", "read-session", "run-transaction", "plain")
WRITE_SHAPES = ("session", "run-transaction", "plain")


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


async def _work(session: AsyncSession, scenario: str) -> None:
    """What each route does with its session, by scenario."""
    if scenario == "duplicate":
        await session.execute(text("INSERT INTO mapping_item (name) VALUES (:n)"), {"n": SECRET})
    elif scenario == "statement-timeout":
        await session.execute(text("SELECT pg_sleep(5)"))
    elif scenario == "app-os-error":
        await session.execute(text("SELECT 1"))
        open("/nonexistent/sessionwise/config.toml")  # noqa: ASYNC230, SIM115  # an app bug
    elif scenario == "app-timeout":
        await session.execute(text("SELECT 1"))
        await asyncio.wait_for(asyncio.sleep(1), 0.01)
    elif scenario == "syntax-error":
        await session.execute(text("SELEC name FROM mapping_item"))
    elif scenario == "no-such-table":
        await session.execute(text("SELECT name FROM mapping_items"))
    elif scenario == "no-such-column":
        await session.execute(text("SELECT nickname FROM mapping_item"))
    else:  # "locked", "pool-exhausted": any statement meets the failure
        await session.execute(
            text("SELECT count(*) FROM mapping_item WHERE name = :n"), {"n": SECRET}
        )


def build_app(db: Database) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)

    @app.post("/session/{scenario}")
    async def with_session(scenario: str, session: AsyncSessionDep) -> dict[str, bool]:
        await _work(session, scenario)
        return {"ok": True}

    @app.post("/read-session/{scenario}")
    async def with_read_session(scenario: str, session: AsyncReadSessionDep) -> dict[str, bool]:
        await _work(session, scenario)
        return {"ok": True}

    @app.post("/run-transaction/{scenario}")
    async def with_run_transaction(scenario: str, database: DatabaseDep) -> dict[str, bool]:
        async def work(session: AsyncSession) -> None:
            await _work(session, scenario)

        await database.run_transaction(work, retries=2, backoff=0.01)
        return {"ok": True}

    @app.post("/plain/{scenario}")
    async def with_plain_session(scenario: str) -> dict[str, bool]:
        async with db.session() as session:  # no sessionwise dependency at all
            await _work(session, scenario)
        return {"ok": True}

    return app


async def _create_schema(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE mapping_item (name VARCHAR(50) NOT NULL UNIQUE)"))
        await session.execute(text("INSERT INTO mapping_item (name) VALUES (:n)"), {"n": SECRET})


@asynccontextmanager
async def serving(db: Database, app: FastAPI | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = app or build_app(db)
    # ASGITransport does not run the lifespan; enter it here as a server would.
    async with db.lifespan(app):
        await _create_schema(db)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
        assert db.pool_status().checked_out == 0


def small_database(url: str, **options: Any) -> Database:
    """One pooled connection and short waits, so every failure comes fast."""
    defaults: dict[str, Any] = {
        "session_class": AsyncSession,  # plain SQLAlchemy: execute(text(...)) is the API
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": 0.5,
        "sqlite_busy_timeout": 0.2,
    }
    if is_postgres(url):
        defaults.update(statement_timeout=1.0, lock_timeout=0.2)
    return Database(url, **{**defaults, **options})


@asynccontextmanager
async def sqlite_write_lock(url: str) -> AsyncIterator[None]:
    """Another connection (as another process would) holds the SQLite file's write lock."""
    path = make_url(url).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.close()


@asynccontextmanager
async def postgres_table_lock(url: str) -> AsyncIterator[None]:
    """Another connection holds ``mapping_item`` under ACCESS EXCLUSIVE (blocks even reads)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    holder = await asyncpg.connect(dsn)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE mapping_item IN ACCESS EXCLUSIVE MODE")
        yield
        await transaction.rollback()
    finally:
        await holder.close()


@asynccontextmanager
async def pool_exhausted(db: Database) -> AsyncIterator[None]:
    # A read session holds the only connection (on SQLite, write sessions queue for the
    # writer before they ever ask the pool, so only readers can exhaust it).
    async with db.read_session() as holder:
        await holder.connection()
        yield


def answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    body = response.json() if response.status_code != 500 else response.text
    return response.status_code, body, response.headers.get("Retry-After")


def sessionwise_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of answers the error handlers made (run_transaction logs its own)."""
    return [
        record
        for record in caplog.records
        if record.name == "sessionwise"
        and record.levelno == logging.WARNING
        and hasattr(record, "sessionwise_failure")
    ]


# -- an app's own errors are the app's ---------------------------------------------------------


@pytest.mark.parametrize("scenario", ["app-os-error", "app-timeout"])
async def test_an_app_os_error_or_timeout_is_a_500_not_database_unavailable(
    database_url: str, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = small_database(database_url)
    async with serving(db) as client:
        for shape in SHAPES:
            response = await client.post(f"/{shape}/{scenario}")
            assert response.status_code == 500, (shape, response.text)
            assert "Retry-After" not in response.headers
    assert sessionwise_warnings(caplog) == []  # not a database failure: nothing mapped


@pytest.mark.parametrize("scenario", ["syntax-error", "no-such-table", "no-such-column"])
async def test_sqlite_sql_errors_are_500_not_503(
    sqlite_url: str, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = small_database(sqlite_url)
    async with serving(db) as client:
        for shape in SHAPES:
            response = await client.post(f"/{shape}/{scenario}")
            assert response.status_code == 500, (shape, response.text)
    assert sessionwise_warnings(caplog) == []


# -- one answer per cause, on every route ----------------------------------------------------

EXPECTED = {
    "duplicate": (409, {"detail": "the change conflicts with existing data"}, None),
    "pool-exhausted": (503, {"detail": "database busy: no connection became free in time"}, "1"),
    "locked": (503, {"detail": "database busy: a lock was not granted in time"}, "1"),
    "statement-timeout": (504, {"detail": "database statement timed out"}, None),
}


async def _answers_on_every_shape(
    db: Database, client: httpx.AsyncClient, scenario: str, shapes: tuple[str, ...]
) -> dict[str, tuple[int, Any, str | None]]:
    url = db.config.url
    if scenario == "pool-exhausted":
        lock = pool_exhausted(db)
    elif scenario == "locked":
        lock = postgres_table_lock(url) if is_postgres(url) else sqlite_write_lock(url)
    else:
        lock = _nothing()
    answers = {}
    async with lock:
        for shape in shapes:
            answers[shape] = answer(await client.post(f"/{shape}/{scenario}"))
    return answers


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


@pytest.mark.parametrize("scenario", ["duplicate", "pool-exhausted", "locked"])
async def test_the_same_failure_gets_the_same_answer_on_every_route_shape(
    database_url: str, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite readers never wait for the write lock (WAL), and a read session does not
    # insert: those pairs have no such failure to answer.
    reads_fail = scenario == "pool-exhausted" or (
        scenario == "locked" and is_postgres(database_url)
    )
    shapes = SHAPES if reads_fail else WRITE_SHAPES
    db = small_database(database_url)
    async with serving(db) as client:
        answers = await _answers_on_every_shape(db, client, scenario, shapes)
        # Nothing stuck: the same requests succeed once the failure is gone.
        assert (await client.post("/session/pool-exhausted")).status_code == 200

    assert answers == dict.fromkeys(shapes, EXPECTED[scenario])
    assert len(sessionwise_warnings(caplog)) == len(shapes)


@pytest.mark.postgres
async def test_statement_timeout_gets_the_same_answer_on_every_route_shape(
    postgres_url: str,
) -> None:
    db = small_database(postgres_url, statement_timeout=0.2)
    async with serving(db) as client:
        answers = await _answers_on_every_shape(db, client, "statement-timeout", SHAPES)
    assert answers == dict.fromkeys(SHAPES, EXPECTED["statement-timeout"])


@pytest.mark.postgres
async def test_a_connect_refused_by_the_server_is_unavailable(postgres_url: str) -> None:
    # asyncpg raises a raw ConnectionRefusedError here; sessionwise.postgres hands it to
    # SQLAlchemy as a DBAPI error, so that it is told apart from an app's own OSError.
    nowhere = make_url(postgres_url).set(host="127.0.0.1", port=free_port())
    db = small_database(nowhere.render_as_string(hide_password=False))
    app = build_app(db)
    async with db.lifespan(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = {shape: answer(await client.post(f"/{shape}/locked")) for shape in SHAPES}
    expected = (503, {"detail": "database unavailable"}, "1")
    assert answers == dict.fromkeys(SHAPES, expected)


# -- visible to the operator, opaque to the client -------------------------------------------


async def test_each_mapped_answer_logs_one_warning_with_route_and_no_sql(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = small_database(database_url)
    async with serving(db) as client:
        caplog.clear()
        response = await client.post("/session/duplicate")

    assert response.status_code == 409
    [record] = sessionwise_warnings(caplog)
    message = record.getMessage()
    assert message.startswith("POST /session/{scenario} answered 409, database integrity (")
    if is_postgres(database_url):
        assert message.endswith("(IntegrityError from UniqueViolationError, SQLSTATE 23505)")
    else:
        assert message.endswith("(IntegrityError from IntegrityError, SQLITE_CONSTRAINT_UNIQUE)")
    assert record.exc_info is None  # a traceback would print the SQL and its parameters
    for secret in (SECRET, "INSERT", "mapping_item"):
        assert secret not in message
        assert secret not in response.text


async def test_a_lock_wait_that_ran_out_is_logged_with_its_cause(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = small_database(database_url)
    async with serving(db) as client:
        caplog.clear()
        url = db.config.url
        lock = postgres_table_lock(url) if is_postgres(url) else sqlite_write_lock(url)
        async with lock:
            response = await client.post("/plain/locked")

    assert answer(response) == EXPECTED["locked"]
    [record] = sessionwise_warnings(caplog)
    cause = "SQLSTATE 55P03" if is_postgres(database_url) else "SQLITE_BUSY"
    assert record.getMessage().startswith("POST /plain/{scenario} answered 503, database locked (")
    assert f", {cause})" in record.getMessage()
    assert record.sessionwise_failure == Failure.LOCKED.value  # type: ignore[attr-defined]
    assert SECRET not in record.getMessage()
    assert "SELECT" not in record.getMessage()


# -- the app keeps the last word ---------------------------------------------------------------


async def test_an_apps_own_integrity_error_handler_wins_on_every_route(sqlite_url: str) -> None:
    db = small_database(sqlite_url)
    app = build_app(db)

    async def on_integrity_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, IntegrityError)
        return JSONResponse({"mine": True}, status_code=422)

    app.add_exception_handler(IntegrityError, on_integrity_error)
    async with serving(db, app) as client:
        bodies = {
            shape: (await client.post(f"/{shape}/duplicate")).json() for shape in WRITE_SHAPES
        }
    assert bodies == {shape: {"mine": True} for shape in WRITE_SHAPES}


async def test_a_handler_for_a_broader_class_of_a_sessionwise_error_still_fires(
    sqlite_url: str,
) -> None:
    db = small_database(sqlite_url)
    app = build_app(db)
    never_started = Database(sqlite_url)

    @app.get("/forgotten-database")
    async def forgotten() -> None:
        async with never_started.session():  # DatabaseStateError, also a RuntimeError
            pass

    async def on_runtime_error(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"runtime_error": type(error).__name__}, status_code=500)

    app.add_exception_handler(RuntimeError, on_runtime_error)
    async with serving(db, app) as client:
        response = await client.get("/forgotten-database")
    assert response.json() == {"runtime_error": "DatabaseStateError"}


async def test_render_shapes_the_answer_and_install_is_idempotent(sqlite_url: str) -> None:
    db = small_database(sqlite_url)
    app = build_app(db)
    seen: list[FailureAnswer] = []

    async def render(_request: Request, failure: FailureAnswer) -> Response:
        seen.append(failure)
        return JSONResponse(
            {"kind": failure.failure.value},
            status_code=failure.status_code,
            headers=dict(failure.headers),
            media_type="application/problem+json",
        )

    install_error_handlers(app, render=render)
    install_error_handlers(app)  # a second call (the lifespan's) keeps the first
    async with serving(db, app) as client:
        response = await client.post("/run-transaction/duplicate")
    assert (response.status_code, response.json()) == (409, {"kind": "integrity"})
    assert response.headers["content-type"] == "application/problem+json"
    assert [failure.failure for failure in seen] == [Failure.INTEGRITY]


# -- served for real: installed by the lifespan alone, keep-alive answered --------------------


class _Passthrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


@asynccontextmanager
async def served_by_uvicorn(app: FastAPI, ws: str = "none") -> AsyncIterator[str]:
    """*app* served by uvicorn in this process, its lifespan run through ASGI."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None, ws=ws)
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        await wait_until(lambda: server.started, within=30)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


async def test_the_lifespan_alone_installs_the_handlers_and_keep_alive_clients_get_answers(
    database_url: str,
) -> None:
    db = small_database(database_url)
    app = build_app(db)  # FastAPI(lifespan=db.lifespan), no install_error_handlers call
    app.add_middleware(_Passthrough)
    url = db.config.url
    lock = postgres_table_lock if is_postgres(url) else sqlite_write_lock
    async with served_by_uvicorn(app) as base_url:
        await _create_schema(db)
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=10) as client,  # one kept-alive connection
            lock(url),
        ):
            # run_transaction re-runs on a lock timeout, runs out of retries, and the error
            # leaves a route that has no session dependency: the same 503 every time.
            answers = [answer(await client.post("/run-transaction/locked")) for _ in range(3)]
        assert answers == [EXPECTED["locked"]] * 3
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            assert answer(await client.post("/session/duplicate")) == EXPECTED["duplicate"]


async def test_a_database_failure_in_a_websocket_is_left_to_starlette(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Starlette hands a WebSocket, not a Request, to the exception handlers of websocket
    # routes, and sends nothing they return: the handler steps aside, and the error reaches
    # the server as it is (which logs its traceback and drops the connection).
    db = small_database(sqlite_url)
    app = build_app(db)

    @app.websocket("/ws")
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        async with db.session() as session:
            await _work(session, "duplicate")

    async with served_by_uvicorn(app, ws="websockets-sansio") as base_url:
        await _create_schema(db)
        address = base_url.replace("http://", "ws://") + "/ws"
        async with websockets.asyncio.client.connect(address) as connection:
            with pytest.raises(websockets.exceptions.ConnectionClosedError):
                await connection.recv()
    errors = [record for record in caplog.records if record.exc_info is not None]
    assert errors, "uvicorn logs the IntegrityError's traceback"
    assert isinstance(errors[0].exc_info[1], IntegrityError)


@pytest.mark.parametrize("first_route", ["session", "read-session"])
async def test_an_app_that_skipped_the_lifespan_still_answers_by_cause(
    database_url: str, first_route: str
) -> None:
    # Tests often put a started Database on app.state by hand instead of running the lifespan
    # (and so never install the handlers): the session dependencies install them on the
    # first request, so that request and the following ones answer like a served app.
    async with small_database(database_url) as db:
        await _create_schema(db)
        app = build_app(db)
        app.state.sessionwise_database = db
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            scenario = "duplicate" if first_route == "session" else "syntax-error"
            first = await client.post(f"/{first_route}/{scenario}")
            duplicate = await client.post("/session/duplicate")
            bug = await client.post("/read-session/app-os-error")
            fine = await client.post("/read-session/pool-exhausted")
    assert first.status_code == (409 if first_route == "session" else 500)
    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "the change conflicts with existing data"}
    assert bug.status_code == 500
    assert fine.status_code == 200
