"""An exhausted pool, a restarted server and a stuck query each get a fast, honest answer.

A FastAPI app (``SessionDep``) over httpx's ASGITransport, against a real SQLite file and the
real PostgreSQL server:

* no free connection within ``pool_timeout`` -> 503 with ``Retry-After``, within
  ``pool_timeout + 0.5 s`` (a stated guarantee);
* ``pool_status()`` counts checked-out connections and the sessions waiting for one;
* every backend of the app terminated (what a server restart does to a pool) -> the next
  request succeeds, thanks to ``pool_pre_ping``;
* a query running past ``statement_timeout`` -> 504.
"""

from __future__ import annotations

import functools
import time

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from sessionwise import Database
from sessionwise.fastapi import SessionDep
from tests.support.pg_activity import backend_states, terminate_backends
from tests.support.waiting import wait_until

POOL_TIMEOUT = 1.0
ANSWER_BOUND = POOL_TIMEOUT + 0.5  # the guarantee: a 503 within pool_timeout + 0.5 s


def build_app(db: Database) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)

    @app.get("/one")
    async def one(session: SessionDep) -> dict[str, int | None]:
        return {"one": await session.scalar(text("SELECT 1"))}

    @app.get("/sleep")
    async def sleep(session: SessionDep, seconds: float) -> dict[str, bool]:
        await session.scalar(text("SELECT pg_sleep(:s)"), {"s": seconds})
        return {"slept": True}

    return app


async def _no_backends(admin: asyncpg.Connection, application_name: str) -> bool:
    return not sum((await backend_states(admin, application_name)).values())


async def _client_loop_reads_the_closes() -> None:
    # Served by uvicorn, a request reaches the app through the event loop, which has read
    # the closed pool sockets by then. Through ASGITransport the request may run without the
    # loop polling its sockets in between; give it that turn.
    await anyio.sleep(0.05)


class Served:
    """A started app and an httpx client talking to it through ASGITransport."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.app = build_app(db)

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.db.lifespan(self.app)
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://test")
        return await self._client.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._client.__aexit__(*exc)
        await self._lifespan.__aexit__(*exc)


# -- pool exhaustion -----------------------------------------------------------------------------


async def test_exhausted_pool_answers_503_with_retry_after_within_bound(database_url: str) -> None:
    db = Database(database_url, pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT)
    async with Served(db) as client:
        # A read session holds it: on SQLite, write sessions take turns before they ever ask
        # the pool, so only readers can exhaust it there.
        async with db.read_session() as holder:
            await holder.connection()  # the pool's only connection, held by another session
            assert db.pool_status().checked_out == 1

            started = time.monotonic()
            response = await client.get("/one")
            elapsed = time.monotonic() - started

        assert response.status_code == 503
        assert response.json() == {"detail": "database busy: no connection became free in time"}
        assert response.headers["Retry-After"] == "1"
        assert elapsed < ANSWER_BOUND, f"503 after {elapsed:.2f}s, bound {ANSWER_BOUND}s"
        print(f"503 with the pool exhausted after {elapsed:.3f}s (bound {ANSWER_BOUND}s)")
        assert db.pool_status().checked_out == 0
        # The connection is free again: the same request now succeeds.
        assert (await client.get("/one")).json() == {"one": 1}


async def test_pool_status_counts_checked_out_and_waiting_sessions(database_url: str) -> None:
    db = Database(database_url, pool_size=2, max_overflow=1, pool_timeout=10)
    waiters = 3
    async with db:
        release = anyio.Event()
        finished = 0

        # Read sessions: SQLite write sessions would queue for the writer, not for the pool.
        async def hold() -> None:
            async with db.read_session() as session:
                await session.connection()
                await release.wait()

        async def wait_for_connection() -> None:
            nonlocal finished
            async with db.read_session() as session:
                assert await session.scalar(text("SELECT 1")) == 1
            finished += 1

        async with anyio.create_task_group() as group:
            for _ in range(3):  # pool_size + max_overflow: every connection in use
                group.start_soon(hold)
            await wait_until(lambda: db.pool_status().checked_out == 3)
            for _ in range(waiters):
                group.start_soon(wait_for_connection)
            await wait_until(lambda: db.pool_status().waiting == waiters)

            status = db.pool_status()
            assert status.as_dict() == {"size": 2, "checked_out": 3, "overflow": 1, "waiting": 3}
            assert finished == 0
            release.set()

        assert finished == waiters
        status = db.pool_status()
        assert (status.checked_out, status.waiting) == (0, 0)


# -- a server restart ----------------------------------------------------------------------------


@pytest.mark.postgres
async def test_requests_succeed_after_every_backend_was_terminated(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    db = Database(postgres_url, application_name=application_name, pool_size=3, max_overflow=0)
    async with Served(db) as client:
        # Three concurrent requests leave three pooled connections.
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(functools.partial(client.get, "/sleep", params={"seconds": 0.2}))
        assert (await backend_states(pg_admin, application_name))["idle"] == 3

        assert await terminate_backends(pg_admin, application_name) == 3
        await wait_until(lambda: _no_backends(pg_admin, application_name))
        await _client_loop_reads_the_closes()

        # Every pooled connection is dead; pre-ping finds out and reconnects for each.
        responses: list[httpx.Response] = []

        async def request() -> None:
            responses.append(await client.get("/sleep", params={"seconds": 0.2}))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(request)
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert (await backend_states(pg_admin, application_name))["idle"] == 3
        assert db.pool_status().checked_out == 0


@pytest.mark.postgres
async def test_a_terminated_backend_is_replaced_without_waiting_for_the_idle_ping(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    # The cheap tier of the pre-ping: the connection was idle for far less than
    # pool_pre_ping_idle, so no ping runs; the driver saw the server close it, and that is
    # enough to replace it.
    db = Database(
        postgres_url,
        application_name=application_name,
        pool_size=1,
        max_overflow=0,
        pool_pre_ping_idle=3600,
    )
    async with Served(db) as client:
        assert (await client.get("/one")).status_code == 200
        assert await terminate_backends(pg_admin, application_name) == 1
        await wait_until(lambda: _no_backends(pg_admin, application_name))
        await _client_loop_reads_the_closes()

        assert (await client.get("/one")).status_code == 200
        assert (await backend_states(pg_admin, application_name))["idle"] == 1
        assert db.pool_status().checked_out == 0


async def _last_statement_after_checkout(
    url: str, pg_admin: asyncpg.Connection, application_name: str, *, ping_idle: float
) -> str:
    """What the pooled connection's backend ran last, right after a checkout 0.3 s later."""
    db = Database(
        url,
        application_name=application_name,
        pool_size=1,
        max_overflow=0,
        pool_pre_ping_idle=ping_idle,
    )
    async with db:
        async with db.session() as session:
            await session.scalar(text("SELECT 1"))  # ends with COMMIT
        await anyio.sleep(0.3)
        async with db.engine.connect():  # a checkout, and nothing else
            query: str = await pg_admin.fetchval(
                "SELECT query FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
    return query


@pytest.mark.postgres
async def test_a_connection_idle_longer_than_pool_pre_ping_idle_is_pinged(
    postgres_url: str, pg_admin: asyncpg.Connection, application_name: str
) -> None:
    # SQLAlchemy's asyncpg ping is BEGIN, an empty query, ROLLBACK (sqlalchemy#10226).
    pinged = await _last_statement_after_checkout(
        postgres_url, pg_admin, application_name, ping_idle=0.1
    )
    assert pinged.startswith("ROLLBACK")
    not_pinged = await _last_statement_after_checkout(
        postgres_url, pg_admin, application_name, ping_idle=3600
    )
    assert not_pinged.startswith("COMMIT")


@pytest.mark.postgres
async def test_without_pre_ping_a_dead_connection_answers_503_not_500(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    # The control for the test above: pre-ping is what saves that request. Without it, the
    # dead connection fails the request, which the adapter still answers as a retryable 503.
    db = Database(
        postgres_url,
        application_name=application_name,
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=False,
    )
    async with Served(db) as client:
        assert (await client.get("/one")).status_code == 200
        assert await terminate_backends(pg_admin, application_name) == 1
        await wait_until(lambda: _no_backends(pg_admin, application_name))

        failed = await client.get("/one")
        assert failed.status_code == 503
        assert failed.json() == {"detail": "database unavailable"}
        assert "Retry-After" in failed.headers
        # The dead connection was dropped, not pooled again: the retry succeeds.
        assert (await client.get("/one")).status_code == 200
        assert db.pool_status().checked_out == 0


# -- a stuck query -------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_query_past_statement_timeout_answers_504(
    postgres_url: str, application_name: str, pg_admin: asyncpg.Connection
) -> None:
    db = Database(postgres_url, application_name=application_name, statement_timeout=0.2)
    async with Served(db) as client:
        started = time.monotonic()
        response = await client.get("/sleep", params={"seconds": 5})
        elapsed = time.monotonic() - started

        assert response.status_code == 504
        assert response.json() == {"detail": "database statement timed out"}
        assert elapsed < 5  # the server cancelled the query; it did not run to its end
        assert db.pool_status().checked_out == 0
        states = await backend_states(pg_admin, application_name)
        assert set(states) == {"idle"}, states  # rolled back, connection reusable
        assert (await client.get("/sleep", params={"seconds": 0.05})).status_code == 200


# -- fairness ------------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_sessions_get_connections_in_the_order_they_asked(postgres_url: str) -> None:
    # SQLAlchemy's async pool is an asyncio.Queue: a session that asks while a returned
    # connection waits for the woken session takes it, and the woken one goes to the back.
    # Under steady overload some requests lose that race again and again (the long p99 of
    # docs/performance.md before sessionwise.pool_turns). With one connection, a session's
    # statement runs only after every session that asked before it was served.
    db = Database(postgres_url, pool_size=1, max_overflow=0, pool_timeout=30)
    asked: list[tuple[int, int]] = []
    served: list[tuple[int, int]] = []

    async def worker(number: int) -> None:
        for round_ in range(5):
            async with db.session() as session:
                asked.append((number, round_))  # no await between this and joining the line
                await session.scalar(text("SELECT 1"))
                served.append((number, round_))

    async with db:
        async with anyio.create_task_group() as group:
            for number in range(30):
                group.start_soon(worker, number)
        assert db.pool_status().checked_out == 0
    assert len(served) == 150
    assert served == asked
