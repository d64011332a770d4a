"""Streaming a large result to the client: supported (`SessionStreamingResponse`) or refused.

Issue 17.2: a ``StreamingResponse`` over ``await session.stream(...)`` of the request's session
delivered 31 of 200,000 rows with status 200 on PostgreSQL (the session had ended before the
body streamed). Issue 17.3: a client leaving mid-stream behind a `BaseHTTPMiddleware` (an
`app.middleware("http")` function) leaked
the connection, its backend ``idle in transaction`` for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import Column, Integer, MetaData, Table, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database, OpenStreamError, SessionEndedError
from sessionwise.fastapi import DatabaseDep, SessionDep, SessionStreamingResponse
from tests.support.pg_activity import settled_states
from tests.support.ports import free_port
from tests.support.waiting import wait_until

ROWS = 200_000
metadata = MetaData()
stream_row = Table("stream_row", metadata, Column("id", Integer, primary_key=True))


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


@pytest.fixture
async def db(database_url: str, application_name: str) -> AsyncIterator[Database]:
    options = {"application_name": application_name} if is_postgres(database_url) else {}
    async with Database(database_url, pool_size=3, **options) as database:
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            if is_postgres(database_url):
                fill = f"INSERT INTO stream_row (id) SELECT generate_series(1, {ROWS})"
            else:
                fill = (
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                    f"WHERE x < {ROWS}) INSERT INTO stream_row (id) SELECT x FROM n"
                )
            await connection.execute(text(fill))
        yield database


async def all_rows(session: AsyncSession) -> AsyncIterator[str]:
    result = await session.stream(select(stream_row.c.id).order_by(stream_row.c.id))
    async for rows in result.partitions(1000):
        yield "".join(f"{row_id}\n" for (row_id,) in rows)


def build_app(db: Database, *, base_http_middleware: bool = False) -> FastAPI:
    app = FastAPI()
    app.state.sessionwise_database = db

    @app.get("/export")
    async def export(db: DatabaseDep) -> SessionStreamingResponse:
        return SessionStreamingResponse(db, all_rows, media_type="text/plain")

    @app.get("/export/failing")
    async def export_failing(db: DatabaseDep) -> SessionStreamingResponse:
        async def failing(session: AsyncSession) -> AsyncIterator[str]:
            async for chunk in all_rows(session):
                yield chunk
                raise RuntimeError("the report broke mid-body")

        return SessionStreamingResponse(db, failing, media_type="text/plain")

    @app.get("/wrong")
    async def wrong(session: SessionDep) -> StreamingResponse:
        # The natural wrong code: the request's session ends before the body streams.
        result = await session.stream(select(stream_row.c.id))

        async def body() -> AsyncIterator[str]:
            async for (row_id,) in result:
                yield f"{row_id}\n"

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/wrong/inside")
    async def wrong_inside(session: SessionDep) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            result = await session.stream(select(stream_row.c.id))
            async for (row_id,) in result:
                yield f"{row_id}\n"

        return StreamingResponse(body(), media_type="text/plain")

    if base_http_middleware:

        @app.middleware("http")
        async def passthrough(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            return await call_next(request)

    return app


def client_for(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def no_transaction_left(db: Database, admin: asyncpg.Connection | None, name: str) -> None:
    await wait_until(lambda: db.pool_status().checked_out == 0, within=10)
    if admin is not None:
        states = await settled_states(admin, name)
        assert not states["idle in transaction"], states


@pytest.mark.parametrize("base_http_middleware", [False, True])
async def test_a_large_result_arrives_complete(db: Database, base_http_middleware: bool) -> None:
    async with client_for(build_app(db, base_http_middleware=base_http_middleware)) as client:
        response = await client.get("/export")
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert len(lines) == ROWS
    assert lines[0] == "1"
    assert lines[-1] == str(ROWS)
    assert db.pool_status().checked_out == 0


async def test_streaming_from_the_request_session_fails_before_the_first_byte(
    db: Database,
) -> None:
    async with client_for(build_app(db)) as client:
        with pytest.raises(OpenStreamError, match="SessionStreamingResponse"):
            await client.get("/wrong")
    async with client_for(build_app(db), raise_app_exceptions=False) as client:
        response = await client.get("/wrong")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"  # not a single row went out
    assert db.pool_status().checked_out == 0


async def test_opening_a_stream_after_the_request_session_ended_says_so(db: Database) -> None:
    async with client_for(build_app(db)) as client:
        with pytest.raises(SessionEndedError, match="unit of work has ended"):
            await client.get("/wrong/inside")
    assert db.pool_status().checked_out == 0


async def test_an_error_mid_body_closes_the_session(
    db: Database, pg_admin: asyncpg.Connection, application_name: str
) -> None:
    async with client_for(build_app(db)) as client:
        with pytest.raises(RuntimeError, match="broke mid-body"):
            await client.get("/export/failing")
    admin = pg_admin if is_postgres(db.config.url) else None
    await no_transaction_left(db, admin, application_name)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """*app* served by uvicorn on a loopback port, for a client that really goes away."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", ws="none", log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, within=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.mark.parametrize("base_http_middleware", [False, True])
async def test_a_client_leaving_mid_stream_leaves_no_connection_or_transaction(
    db: Database,
    pg_admin: asyncpg.Connection,
    application_name: str,
    base_http_middleware: bool,
) -> None:
    app = build_app(db, base_http_middleware=base_http_middleware)
    async with served(app) as url:
        for _ in range(3):
            async with (
                httpx.AsyncClient(base_url=url) as client,
                client.stream("GET", "/export") as response,
            ):
                assert response.status_code == 200
                received = 0
                async for _chunk in response.aiter_bytes():
                    received += 1
                    if received == 3:
                        break  # and the client goes away mid-body
            admin = pg_admin if is_postgres(db.config.url) else None
            await no_transaction_left(db, admin, application_name)
