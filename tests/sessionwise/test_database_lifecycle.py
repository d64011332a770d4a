"""One `Database`, used both ways: the request dependency and ``db.session()`` behave alike.

Also: the Database's explicit lifecycle (honest errors before start and after close), the
``get_database`` override, and read-only sessions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, select

from sessionwise import Database, DatabaseStateError, ReadOnlySessionError, Session
from sessionwise.errors import sqlstate
from sessionwise.fastapi import ReadSessionDep, SessionDep, get_database
from tests.support.pg_activity import backend_states


class LedgerModel(SQLModel, registry=registry()):
    """Tables of this module, kept out of SQLModel.metadata that other code creates whole."""


class LedgerEntry(LedgerModel, table=True):
    __tablename__ = "ledger_entry"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=50)


class WorkFailed(Exception):
    pass


def build_app(db: Database) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)

    @app.post("/entries", status_code=201)
    async def add_entry(label: str, session: SessionDep, fail: bool = False) -> dict[str, str]:
        session.add(LedgerEntry(label=label))
        await session.flush()
        if fail:
            raise WorkFailed(label)
        return {"label": label}

    @app.get("/entries")
    async def list_entries(session: ReadSessionDep) -> list[str]:
        return list(await session.exec(select(LedgerEntry.label).order_by(LedgerEntry.label)))

    return app


async def create_schema(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(LedgerModel.metadata.create_all, tables=[LedgerEntry.__table__])


async def labels_in(db: Database) -> list[str]:
    async with db.read_session() as session:
        return list(await session.exec(select(LedgerEntry.label).order_by(LedgerEntry.label)))


@asynccontextmanager
async def serving(app: FastAPI, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    # ASGITransport does not run the lifespan; enter it here as a server would.
    async with db.lifespan(app):
        await create_schema(db)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


# -- the two entry points share one implementation ------------------------------------------


@pytest.mark.parametrize("fail", [False, True], ids=["block-succeeds", "block-raises"])
async def test_request_and_db_session_commit_or_roll_back_alike(
    database_url: str, fail: bool
) -> None:
    db = Database(database_url)
    async with serving(build_app(db), db) as client:
        response = await client.post("/entries", params={"label": "request", "fail": fail})
        assert response.status_code == (500 if fail else 201)

        with pytest.raises(WorkFailed) if fail else nullcontext():
            async with db.session() as session:
                session.add(LedgerEntry(label="script"))
                await session.flush()
                if fail:
                    raise WorkFailed("script")

        assert await labels_in(db) == ([] if fail else ["request", "script"])
        assert db.pool_status().checked_out == 0


async def test_request_dependency_enters_db_session(database_url: str) -> None:
    db = Database(database_url)
    app = build_app(db)
    seen: list[Session] = []

    @app.get("/session-id")
    async def session_identity(session: SessionDep) -> int:
        seen.append(session)
        return id(session)

    opened: list[Session] = []
    original = db.session

    def recording_session() -> AbstractAsyncContextManager[Session]:
        @asynccontextmanager
        async def record() -> AsyncIterator[Session]:
            async with original() as session:
                opened.append(session)
                yield session

        return record()

    async with serving(app, db) as client:
        db.session = recording_session  # type: ignore[method-assign]
        assert (await client.get("/session-id")).status_code == 200
        assert (await client.get("/session-id")).status_code == 200

    assert len(opened) == 2
    assert opened == seen  # the endpoint got exactly the session db.session() opened


# -- the dependency override ----------------------------------------------------------------


async def test_overriding_get_database_redirects_session_dep(
    database_url: str, tmp_path: Path
) -> None:
    app_db = Database(database_url)
    app = build_app(app_db)
    async with Database(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}") as other_db:
        await create_schema(other_db)
        app.dependency_overrides[get_database] = lambda: other_db
        async with serving(app, app_db) as client:
            assert (await client.post("/entries", params={"label": "moved"})).status_code == 201
            assert (await client.get("/entries")).json() == ["moved"]

            assert await labels_in(other_db) == ["moved"]
            assert await labels_in(app_db) == []

            app.dependency_overrides.clear()
            assert (await client.get("/entries")).json() == []


# -- the lifecycle: honest errors -------------------------------------------------------------


def _uses() -> list[tuple[str, Callable[[Database], Any]]]:
    return [
        ("engine", lambda db: db.engine),
        ("session_factory", lambda db: db.session_factory),
        ("session", lambda db: db.session()),
        ("read_session", lambda db: db.read_session()),
        ("pool_status", lambda db: db.pool_status()),
    ]


@pytest.mark.parametrize(("name", "use"), _uses(), ids=[name for name, _ in _uses()])
async def test_database_never_started_says_how_to_start_it(
    sqlite_url: str, name: str, use: Callable[[Database], Any]
) -> None:
    db = Database(sqlite_url)

    with pytest.raises(DatabaseStateError, match=r"before start\(\).*lifespan=db\.lifespan"):
        use(db)


@pytest.mark.parametrize(("name", "use"), _uses(), ids=[name for name, _ in _uses()])
async def test_closed_database_says_it_was_closed(
    database_url: str, name: str, use: Callable[[Database], Any]
) -> None:
    db = Database(database_url)
    async with db, db.session() as session:
        assert await session.scalar(text("SELECT 1")) == 1

    with pytest.raises(DatabaseStateError, match=r"after close\(\).*Start it again"):
        use(db)


@pytest.mark.parametrize("memory", [False, True], ids=["file-or-server", "sqlite-memory"])
async def test_closed_database_can_be_started_again(database_url: str, memory: bool) -> None:
    # Issue 9, finding 5: the README's module-level `db`, entered by one test after another.
    db = Database("sqlite+aiosqlite://" if memory else database_url)
    for run in range(3):
        async with db:
            await create_schema(db)
            async with db.session() as session:
                session.add(LedgerEntry(label=f"run {run}"))
            # An in-memory database starts empty again; a file or a server keeps its rows.
            expected = [f"run {run}"] if memory else [f"run {n}" for n in range(run + 1)]
            assert await labels_in(db) == expected
            assert db.pool_status().checked_out == 0
        assert not db.started
        await db.close()  # idempotent


async def test_session_dep_without_the_lifespan_says_to_add_it(sqlite_url: str) -> None:
    app = FastAPI()  # no lifespan=db.lifespan

    @app.get("/")
    async def endpoint(session: SessionDep) -> None:
        raise AssertionError("never reached")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(DatabaseStateError, match=r"FastAPI\(lifespan=db\.lifespan\)"):
            await client.get("/")


async def test_session_dep_after_shutdown_finds_no_database(sqlite_url: str) -> None:
    # The lifespan takes the Database off app.state when it ends (issue 17, finding 4).
    db = Database(sqlite_url)
    app = build_app(db)
    async with db.lifespan(app):
        await create_schema(db)
    assert not db.started

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(DatabaseStateError, match=r"no Database on app\.state"):
            await client.post("/entries", params={"label": "late"})


# -- read sessions --------------------------------------------------------------------------


async def test_read_session_reads(database_url: str) -> None:
    async with Database(database_url) as db:
        await create_schema(db)
        async with db.session() as session:
            session.add_all([LedgerEntry(label="a"), LedgerEntry(label="b")])

        async with db.read_session() as session:
            entries = (await session.exec(select(LedgerEntry).order_by(LedgerEntry.label))).all()
            count = await session.scalar(select(func.count()).select_from(LedgerEntry))

        assert [entry.label for entry in entries] == ["a", "b"]
        assert count == 2


async def test_read_session_refuses_to_flush_changes(database_url: str) -> None:
    async with Database(database_url) as db:
        await create_schema(db)
        async with db.session() as session:
            session.add(LedgerEntry(label="original"))

        async with db.read_session() as session:
            session.add(LedgerEntry(label="new"))
            with pytest.raises(ReadOnlySessionError, match=r"LedgerEntry.*db\.session\(\)"):
                await session.flush()

        async with db.read_session() as session:
            entry = (await session.exec(select(LedgerEntry))).one()
            entry.label = "changed"
            autoflushing_query = select(func.count()).select_from(LedgerEntry)
            with pytest.raises(ReadOnlySessionError, match="LedgerEntry"):
                await session.scalar(autoflushing_query)

        assert await labels_in(db) == ["original"]
        assert db.pool_status().checked_out == 0


@pytest.mark.postgres
@pytest.mark.parametrize("read_sessions", ["transaction", "autocommit"])
async def test_read_session_transaction_is_read_only_on_postgres(
    postgres_url: str, read_sessions: Literal["transaction", "autocommit"]
) -> None:
    async with Database(postgres_url, read_sessions=read_sessions) as db:
        await create_schema(db)
        async with db.session() as session:
            assert await session.scalar(text("SHOW transaction_read_only")) == "off"

        async with db.read_session() as session:
            assert await session.scalar(text("SHOW transaction_read_only")) == "on"
            connection = await session.connection()
            with pytest.raises(DBAPIError) as refused:
                await connection.exec_driver_sql(
                    "INSERT INTO ledger_entry (label) VALUES ('sneaky')"
                )
        assert sqlstate(refused.value) == "25006"  # read_only_sql_transaction
        assert await labels_in(db) == []


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("read_sessions", "between_statements", "same_now"),
    [("transaction", "idle in transaction", True), ("autocommit", "idle", False)],
)
async def test_autocommit_read_sessions_hold_no_transaction_between_statements(
    postgres_url: str,
    pg_admin: asyncpg.Connection,
    application_name: str,
    read_sessions: Literal["transaction", "autocommit"],
    between_statements: str,
    same_now: bool,
) -> None:
    db = Database(postgres_url, read_sessions=read_sessions, application_name=application_name)
    async with db:
        async with db.read_session() as session:
            first = await session.scalar(text("SELECT now()"))  # the transaction's start time
            await anyio.sleep(0.01)
            second = await session.scalar(text("SELECT now()"))
            assert await backend_states(pg_admin, application_name) == {between_statements: 1}
            assert db.pool_status().checked_out == 1
        assert (first == second) is same_now
        assert db.pool_status().checked_out == 0


async def test_read_session_refuses_core_writes_on_sqlite(sqlite_url: str) -> None:
    # Issue 9, finding 4: an INSERT in a read session used to "succeed" and vanish at the
    # rollback. PRAGMA query_only makes SQLite refuse it, as READ ONLY does on PostgreSQL.
    async with Database(sqlite_url, pool_size=1) as db:
        await create_schema(db)
        async with db.read_session() as session:
            connection = await session.connection()
            with pytest.raises(OperationalError, match="readonly database"):
                await connection.exec_driver_sql(
                    "INSERT INTO ledger_entry (label) VALUES ('sneaky')"
                )

        # The one pooled connection went back writable: query_only is reset on return.
        async with db.session() as session:
            session.add(LedgerEntry(label="written"))
        assert await labels_in(db) == ["written"]
