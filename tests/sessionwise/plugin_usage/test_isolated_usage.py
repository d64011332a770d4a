"""Tests written the way a sessionwise user writes them, with the ``sessionwise.testing`` plugin.

The plugin comes from the ``pytest11`` entry point; this module only says which database and
which app to use, by overriding ``sessionwise_database`` and ``sessionwise_app``. Every test
then writes through requests (``api_client``) and sessions (``isolated_db``, ``db_session``)
and sees its writes; the plugin rolls all of it back at teardown.

In this repository the module runs once on SQLite and once on PostgreSQL. The meta-test
(``tests/sessionwise/test_testing_plugin.py``) runs a copy of it in a separate pytest process
against one database that outlives the tests, set in ``SESSIONWISE_PLUGIN_TEST_URL``, and then
counts what is left.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import Field, SQLModel

from sessionwise import Database, Session
from sessionwise.fastapi import SessionDep

GIVEN_URL = os.environ.get("SESSIONWISE_PLUGIN_TEST_URL")
COUNT = text("SELECT count(*) FROM plugin_note")


class PluginNote(SQLModel, table=True):
    __tablename__ = "plugin_note"

    id: int | None = Field(default=None, primary_key=True)
    body: str = Field(max_length=100, unique=True)


@pytest.fixture(
    params=["given"]
    if GIVEN_URL
    else ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def plugin_database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "given":
        assert GIVEN_URL is not None
        return GIVEN_URL
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def sessionwise_database(plugin_database_url: str) -> AsyncIterator[Database]:
    async with Database(plugin_database_url) as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(
                SQLModel.metadata.create_all, tables=[PluginNote.__table__], checkfirst=True
            )
        yield db


@pytest.fixture
def sessionwise_app() -> FastAPI:
    app = FastAPI()

    @app.post("/notes", status_code=201)
    async def create_note(body: str, session: SessionDep) -> dict[str, str]:
        session.add(PluginNote(body=body))
        return {"body": body}

    @app.get("/notes/count")
    async def count_notes(session: SessionDep) -> dict[str, int | None]:
        return {"count": await session.scalar(COUNT)}

    return app


async def test_request_writes_are_visible_within_the_test(
    api_client: httpx.AsyncClient, db_session: Session
) -> None:
    created = await api_client.post("/notes", params={"body": "from a request"})
    assert created.status_code == 201
    assert (await api_client.get("/notes/count")).json() == {"count": 1}
    assert await db_session.scalar(COUNT) == 1


async def test_session_writes_are_visible_within_the_test(
    isolated_db: Database, api_client: httpx.AsyncClient
) -> None:
    async with isolated_db.session() as session:
        session.add(PluginNote(body="from db.session()"))
    async with isolated_db.read_session() as session:
        assert await session.scalar(COUNT) == 1
    assert (await api_client.get("/notes/count")).json() == {"count": 1}


async def test_arranged_data_survives_a_failed_request(
    db_session: Session, api_client: httpx.AsyncClient
) -> None:
    db_session.add(PluginNote(body="arranged"))
    await db_session.flush()
    # The same body again: the request's commit fails, and only its own work is undone.
    duplicate = await api_client.post("/notes", params={"body": "arranged"})
    assert duplicate.status_code == 409
    assert (await api_client.get("/notes/count")).json() == {"count": 1}
    assert await db_session.scalar(COUNT) == 1


async def test_every_test_starts_from_an_empty_table(db_session: Session) -> None:
    # Runs after the tests above (file order). Meaningful where the database outlives each
    # test, as in the meta-test's run: their rows were rolled back.
    assert await db_session.scalar(COUNT) == 0
