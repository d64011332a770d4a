"""The request session commits before the response: a failed commit never answers 2xx.

Every test drives a real FastAPI app (``FastAPI(lifespan=db.lifespan)``, ``SessionDep``) over
httpx's ASGITransport against a real SQLite file or the real PostgreSQL server, then checks
the database itself with a fresh session.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import Column, ForeignKey, Integer, String, UniqueConstraint, event, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, select
from starlette.types import Message, Receive, Scope, Send

from sessionwise import Database
from sessionwise.fastapi import ReadSessionDep, SessionDep


class LifecycleModel(SQLModel, registry=registry()):
    """Tables of this module, kept out of SQLModel.metadata that other code creates whole."""


class LifecycleItem(LifecycleModel, table=True):
    __tablename__ = "lifecycle_item"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)


class LifecycleParent(LifecycleModel, table=True):
    __tablename__ = "lifecycle_parent"

    id: int | None = Field(default=None, primary_key=True)


class LifecycleChild(LifecycleModel, table=True):
    """A foreign key checked only at COMMIT (SQLite and PostgreSQL both support this)."""

    __tablename__ = "lifecycle_child"

    id: int | None = Field(default=None, primary_key=True)
    parent_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("lifecycle_parent.id", deferrable=True, initially="DEFERRED"),
            nullable=False,
        )
    )


class LifecycleSlot(LifecycleModel, table=True):
    """A unique constraint checked only at COMMIT (PostgreSQL only: SQLite has no such thing)."""

    __tablename__ = "lifecycle_slot"
    __table_args__ = (UniqueConstraint("code", deferrable=True, initially="DEFERRED"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String(20), nullable=False))


COMMON_TABLES = [LifecycleItem.__table__, LifecycleParent.__table__, LifecycleChild.__table__]


def is_postgres(db: Database) -> bool:
    return make_url(db.config.url).get_backend_name() == "postgresql"


def build_app(db: Database) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)

    @app.post("/items", status_code=201)
    async def create_item(name: str, session: SessionDep, flush: bool = False) -> dict[str, str]:
        session.add(LifecycleItem(name=name))
        if flush:
            await session.flush()
        return {"name": name}

    @app.get("/items/{name}")
    async def read_item(name: str, session: ReadSessionDep) -> dict[str, Any]:
        item = (await session.exec(select(LifecycleItem).where(LifecycleItem.name == name))).first()
        if item is None:
            raise HTTPException(404, "no such item")
        return {"id": item.id, "name": item.name}

    @app.post("/items-then-http-error", status_code=201)
    async def create_item_then_refuse(name: str, session: SessionDep) -> None:
        session.add(LifecycleItem(name=name))
        await session.flush()
        raise HTTPException(422, "refused after writing")

    @app.post("/items-then-crash", status_code=201)
    async def create_item_then_crash(name: str, session: SessionDep) -> None:
        session.add(LifecycleItem(name=name))
        await session.flush()
        raise RuntimeError("a bug after writing")

    @app.post("/orphans", status_code=201)
    async def create_orphan(session: SessionDep) -> dict[str, int | None]:
        child = LifecycleChild(parent_id=999_999)
        session.add(child)
        await session.flush()  # passes: the foreign key is only checked at COMMIT
        return {"id": child.id}

    @app.post("/slots", status_code=201)
    async def create_slot(code: str, session: SessionDep) -> dict[str, int | None]:
        slot = LifecycleSlot(code=code)
        session.add(slot)
        await session.flush()  # passes: the unique constraint is only checked at COMMIT
        return {"id": slot.id}

    @app.post("/items-then-lose-connection", status_code=201)
    async def create_item_then_lose_connection(name: str, session: SessionDep) -> dict[str, str]:
        session.add(LifecycleItem(name=name))
        await session.flush()
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        async with db.engine.connect() as other:
            # The second argument waits (ms) until the backend is really gone.
            terminated = await other.scalar(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}
            )
        assert terminated is True
        return {"name": name}  # returns normally: only the commit can fail now

    return app


@asynccontextmanager
async def serving(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGITransport, with 500s as responses, and its tables created."""
    app = build_app(db)
    # ASGITransport does not run the lifespan; enter it here as a server would.
    async with db.lifespan(app):
        tables = COMMON_TABLES + ([LifecycleSlot.__table__] if is_postgres(db) else [])
        async with db.engine.begin() as connection:
            await connection.run_sync(LifecycleModel.metadata.create_all, tables=tables)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
        assert db.pool_status().checked_out == 0


@pytest.fixture
def db(database_url: str) -> Database:
    return Database(database_url, pool_size=3)


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(db) as http:
        yield http


@pytest.fixture
def pg_db(postgres_url: str) -> Database:
    return Database(postgres_url, pool_size=3)


@pytest.fixture
async def pg_client(pg_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(pg_db) as http:
        yield http


async def count_items(db: Database, model: type[LifecycleModel] = LifecycleItem) -> int:
    async with db.read_session() as session:
        count = await session.scalar(select(func.count()).select_from(model))
    assert count is not None
    return count


async def test_a_2xx_write_is_readable_by_the_very_next_request(
    client: httpx.AsyncClient, db: Database
) -> None:
    for number in range(20):
        created = await client.post("/items", params={"name": f"item-{number}"})
        assert created.status_code == 201
        read = await client.get(f"/items/item-{number}")
        assert read.status_code == 200, read.text
        assert read.json()["name"] == f"item-{number}"
    assert await count_items(db) == 20


@pytest.mark.parametrize("flush", [False, True], ids=["found-at-commit", "found-at-flush"])
async def test_unique_violation_answers_409_and_stores_nothing(
    client: httpx.AsyncClient, db: Database, flush: bool
) -> None:
    assert (await client.post("/items", params={"name": "taken"})).status_code == 201

    duplicate = await client.post("/items", params={"name": "taken", "flush": flush})

    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "the change conflicts with existing data"}
    assert await count_items(db) == 1


async def test_deferred_foreign_key_failing_at_commit_answers_409_and_stores_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await client.post("/orphans")

    assert response.status_code == 409, response.text
    assert await count_items(db, LifecycleChild) == 0
    # SQLite keeps a transaction open when its COMMIT fails; the connection must not go back
    # to the pool still holding the write lock, or the next writer waits and fails.
    for number in range(3):
        created = await client.post("/items", params={"name": f"after-{number}"})
        assert created.status_code == 201, created.text


@pytest.mark.postgres
async def test_deferred_unique_constraint_failing_at_commit_answers_409_and_stores_nothing(
    pg_client: httpx.AsyncClient, pg_db: Database
) -> None:
    assert (await pg_client.post("/slots", params={"code": "A1"})).status_code == 201

    response = await pg_client.post("/slots", params={"code": "A1"})

    assert response.status_code == 409, response.text
    assert await count_items(pg_db, LifecycleSlot) == 1


@pytest.mark.postgres
async def test_connection_lost_before_commit_answers_503_with_retry_after_and_stores_nothing(
    pg_client: httpx.AsyncClient, pg_db: Database
) -> None:
    response = await pg_client.post("/items-then-lose-connection", params={"name": "lost"})

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(math.ceil(pg_db.config.pool_timeout))
    assert await count_items(pg_db) == 0
    # The pool recovers: the next request works on a fresh connection.
    assert (await pg_client.post("/items", params={"name": "after"})).status_code == 201
    assert (await pg_client.get("/items/after")).status_code == 200


async def test_http_exception_in_the_endpoint_rolls_back_the_write(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await client.post("/items-then-http-error", params={"name": "refused"})

    assert response.status_code == 422
    assert response.json() == {"detail": "refused after writing"}
    assert await count_items(db) == 0


async def test_unhandled_error_in_the_endpoint_rolls_back_the_write(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await client.post("/items-then-crash", params={"name": "crashed"})

    assert response.status_code == 500
    assert await count_items(db) == 0


class Timeline:
    """The order of commits and response messages, as one list."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def wrap(self, app: FastAPI) -> Any:
        async def recording_app(scope: Scope, receive: Receive, send: Send) -> None:
            async def recording_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.events.append(f"response {message['status']}")
                await send(message)

            await app(scope, receive, recording_send)

        return recording_app


async def test_commit_happens_before_the_response_starts(database_url: str) -> None:
    db = Database(database_url)
    timeline = Timeline()
    app = FastAPI(lifespan=db.lifespan)

    @app.post("/items", status_code=201)
    async def create_item(name: str, session: SessionDep) -> dict[str, str]:
        event.listen(
            session.sync_session, "after_commit", lambda _s: timeline.events.append("commit")
        )
        session.add(LifecycleItem(name=name))
        timeline.events.append("endpoint returns")
        return {"name": name}

    async with db.lifespan(app):
        async with db.engine.begin() as connection:
            await connection.run_sync(LifecycleModel.metadata.create_all, tables=COMMON_TABLES)
        transport = httpx.ASGITransport(app=timeline.wrap(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.post("/items", params={"name": "ordered"})).status_code == 201

    assert timeline.events == ["endpoint returns", "commit", "response 201"]
