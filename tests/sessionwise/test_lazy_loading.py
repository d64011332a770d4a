"""No silent lazy IO: every MissingGreenlet cause either cannot happen or names its fix.

An attribute read cannot await, so any load it sets off outside an awaited session call must
fail. sessionwise makes that failure a `LazyLoadError` (a ``MissingGreenlet``, code ``xd2s``)
whose message names ``Model.attribute`` and what to do, and it keeps the common cases (reading
after commit, server defaults on INSERT) from needing IO at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import DDL, FetchedValue, ForeignKey, String, event, func, select
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    deferred,
    mapped_column,
    relationship,
    selectinload,
)

from sessionwise import Database, LazyLoadError
from sessionwise.fastapi import SessionDep


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = "lazy_shelf"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # A SQL expression evaluated by the database on every UPDATE: its value is unknown to the
    # ORM after the flush, so the attribute is expired.
    revised_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    # Maintained by a trigger (below); server_onupdate tells the ORM to expire it on UPDATE.
    revision: Mapped[int] = mapped_column(server_default="0", server_onupdate=FetchedValue())
    notes: Mapped[str] = deferred(mapped_column(String(200), server_default="long text"))
    books: Mapped[list[Book]] = relationship(back_populates="shelf")


class Book(Base):
    __tablename__ = "lazy_book"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    shelf_id: Mapped[int] = mapped_column(ForeignKey("lazy_shelf.id"))
    shelf: Mapped[Shelf] = relationship(back_populates="books")


class EagerShelf(Base):
    """The fix the error message suggests for server-side onupdate: eager_defaults."""

    __tablename__ = "lazy_eager_shelf"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    revised_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


event.listen(
    Shelf.__table__,
    "after_create",
    DDL(
        "CREATE TRIGGER lazy_shelf_revision AFTER UPDATE OF name ON lazy_shelf "
        "BEGIN UPDATE lazy_shelf SET revision = revision + 1 WHERE id = NEW.id; END"
    ).execute_if(dialect="sqlite"),
)
for statement in (
    "CREATE FUNCTION lazy_shelf_revision() RETURNS trigger AS $$ BEGIN "
    "NEW.revision := OLD.revision + 1; RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER lazy_shelf_revision BEFORE UPDATE OF name ON lazy_shelf "
    "FOR EACH ROW EXECUTE FUNCTION lazy_shelf_revision()",
):
    event.listen(Shelf.__table__, "after_create", DDL(statement).execute_if(dialect="postgresql"))

SESSION_CLASSES = pytest.mark.parametrize(
    "session_class", [None, AsyncSession], ids=["sqlmodel-session", "sqlalchemy-session"]
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url) as database:
        async with database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield database
        assert database.pool_status().checked_out == 0


async def add_shelf(db: Database, name: str = "fiction", books: int = 2) -> int:
    async with db.session() as session:
        shelf = Shelf(name=name, books=[Book(title=f"book {n}") for n in range(books)])
        session.add(shelf)
    return shelf.id


def assert_names_the_fix(error: BaseException, attribute: str, fix: str) -> None:
    """A LazyLoadError that is a MissingGreenlet (xd2s) and names *attribute* and *fix*."""
    assert isinstance(error, LazyLoadError)
    assert isinstance(error, MissingGreenlet)
    assert error.code == "xd2s"
    message = str(error)
    assert message.startswith(f"{attribute} is not loaded, and loading it"), message
    assert fix in message, message


# -- relationships ---------------------------------------------------------------------------


@SESSION_CLASSES
async def test_lazy_collection_after_get_raises_naming_it(
    database_url: str, session_class: type[AsyncSession] | None
) -> None:
    options = {} if session_class is None else {"session_class": session_class}
    async with Database(database_url, **options) as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        shelf_id = await add_shelf(db)

        async with db.session() as session:
            shelf = await session.get(Shelf, shelf_id)
            assert shelf is not None
            with pytest.raises(MissingGreenlet) as raised:
                _ = shelf.books
            assert_names_the_fix(raised.value, "Shelf.books", "selectinload(Shelf.books)")

            # Both fixes the message names work.
            assert len(await shelf.awaitable_attrs.books) == 2
        async with db.session() as session:
            loaded = await session.scalar(
                select(Shelf).where(Shelf.id == shelf_id).options(selectinload(Shelf.books))
            )
            assert loaded is not None
            assert sorted(book.title for book in loaded.books) == ["book 0", "book 1"]


async def test_lazy_many_to_one_after_get_raises_naming_it(db: Database) -> None:
    await add_shelf(db, books=1)

    async with db.session() as session:
        book = await session.scalar(select(Book))
        assert book is not None
        with pytest.raises(MissingGreenlet) as raised:
            _ = book.shelf

    assert_names_the_fix(raised.value, "Book.shelf", "selectinload(Book.shelf)")


# -- after commit: no IO needed ---------------------------------------------------------------


async def test_attributes_stay_readable_after_commit(db: Database) -> None:
    async with db.session() as session:
        shelf = Shelf(name="poetry", books=[Book(title="odes")])
        session.add(shelf)
        await session.commit()  # an explicit commit inside the block expires nothing either
        assert shelf.name == "poetry"
        shelf.name = "verse"
    # Committed when the block ended; the session is closed, the object detached.

    assert shelf.name == "verse"
    assert isinstance(shelf.id, int)
    assert [book.title for book in shelf.books] == ["odes"]
    assert shelf.books[0].shelf is shelf


async def test_server_defaults_are_readable_after_insert(db: Database) -> None:
    async with db.session() as session:
        shelf = Shelf(name="history")
        session.add(shelf)
        await session.flush()
        # Fetched with RETURNING during the INSERT (eager_defaults="auto"), no lazy load.
        assert isinstance(shelf.created_at, datetime)
        assert isinstance(shelf.revised_at, datetime)
        assert shelf.revision == 0


# -- expired attributes -----------------------------------------------------------------------


async def test_expired_attribute_after_rollback_raises_naming_it(db: Database) -> None:
    shelf_id = await add_shelf(db, name="science")

    async with db.session() as session:
        shelf = await session.get(Shelf, shelf_id)
        assert shelf is not None
        shelf.name = "not kept"
        await session.rollback()

        with pytest.raises(MissingGreenlet) as raised:
            _ = shelf.name
        assert_names_the_fix(raised.value, "Shelf.name", "await session.refresh(obj)")

        await session.refresh(shelf)
        assert shelf.name == "science"


@pytest.mark.parametrize("attribute", ["name", "id"])
async def test_expired_attribute_after_expire_raises_naming_it(
    db: Database, attribute: str
) -> None:
    shelf_id = await add_shelf(db)

    async with db.session() as session:
        shelf = await session.get(Shelf, shelf_id)
        assert shelf is not None
        session.expire(shelf)

        with pytest.raises(MissingGreenlet) as raised:
            getattr(shelf, attribute)
        assert_names_the_fix(raised.value, f"Shelf.{attribute}", "await session.refresh(obj)")


async def test_one_expired_attribute_raises_naming_it(db: Database) -> None:
    shelf_id = await add_shelf(db)

    async with db.session() as session:
        shelf = await session.get(Shelf, shelf_id)
        assert shelf is not None
        session.expire(shelf, ["name"])

        assert shelf.revision == 0  # the others stay loaded
        with pytest.raises(MissingGreenlet) as raised:
            _ = shelf.name
        assert_names_the_fix(raised.value, "Shelf.name", "await session.refresh(obj)")


async def test_many_to_one_to_an_expired_object_raises_naming_the_relationship(
    db: Database,
) -> None:
    await add_shelf(db, books=1)

    async with db.session() as session:
        shelf = await session.scalar(select(Shelf))
        book = await session.scalar(select(Book))
        assert shelf is not None
        assert book is not None
        session.expire(shelf)

        # The shelf is in the identity map but expired: reading book.shelf must refresh it.
        with pytest.raises(MissingGreenlet) as raised:
            _ = book.shelf

    assert_names_the_fix(raised.value, "Book.shelf", "Shelf.name")


# -- server-side onupdate ----------------------------------------------------------------------


@pytest.mark.parametrize("column", ["revised_at", "revision"], ids=["onupdate", "server_onupdate"])
async def test_server_side_onupdate_read_after_update_flush_raises_naming_it(
    db: Database, column: str
) -> None:
    shelf_id = await add_shelf(db, name="drama")

    async with db.session() as session:
        shelf = await session.get(Shelf, shelf_id)
        assert shelf is not None
        shelf.name = "theatre"
        await session.flush()

        assert shelf.name == "theatre"  # what the ORM wrote stays loaded
        with pytest.raises(MissingGreenlet) as raised:
            getattr(shelf, column)
        assert_names_the_fix(raised.value, f"Shelf.{column}", "eager_defaults")

        await session.refresh(shelf)
        assert shelf.revision == 1  # the trigger really ran


async def test_eager_defaults_fix_makes_onupdate_readable_after_flush(db: Database) -> None:
    async with db.session() as session:
        shelf = EagerShelf(name="maps")
        session.add(shelf)
        await session.flush()
        before = shelf.revised_at

        shelf.name = "atlases"
        await session.flush()

        assert isinstance(shelf.revised_at, datetime)  # returned by the UPDATE, no lazy load
        assert shelf.revised_at >= before


# -- deferred columns ---------------------------------------------------------------------------


async def test_deferred_column_raises_naming_it(db: Database) -> None:
    shelf_id = await add_shelf(db)

    async with db.session() as session:
        shelf = await session.get(Shelf, shelf_id)
        assert shelf is not None
        with pytest.raises(MissingGreenlet) as raised:
            _ = shelf.notes
        assert_names_the_fix(raised.value, "Shelf.notes", "undefer(Shelf.notes)")

        assert await shelf.awaitable_attrs.notes == "long text"


# -- FastAPI response serialization -------------------------------------------------------------


class BookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    title: str


class ShelfOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    books: list[BookOut]


def build_app(db: Database) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)

    @app.get("/shelves/{shelf_id}", response_model=ShelfOut)
    async def read_shelf_forgetting_books(shelf_id: int, session: SessionDep) -> Shelf | None:
        return await session.get(Shelf, shelf_id)

    @app.get("/shelves/{shelf_id}/with-books", response_model=ShelfOut)
    async def read_shelf_with_books(shelf_id: int, session: SessionDep) -> Shelf | None:
        statement = select(Shelf).where(Shelf.id == shelf_id).options(selectinload(Shelf.books))
        return await session.scalar(statement)

    @app.post("/shelves", response_model=ShelfOut, status_code=201)
    async def create_shelf(name: str, session: SessionDep) -> Shelf:
        shelf = Shelf(name=name)  # books never set: serializing them needs a lazy load
        session.add(shelf)
        await session.flush()
        return shelf

    return app


@pytest.fixture
async def app_db(database_url: str) -> AsyncIterator[tuple[FastAPI, Database]]:
    db = Database(database_url)
    app = build_app(db)
    async with db.lifespan(app):
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield app, db


async def test_relationship_touched_by_response_serialization_raises_naming_it(
    app_db: tuple[FastAPI, Database],
) -> None:
    app, db = app_db
    shelf_id = await add_shelf(db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(MissingGreenlet) as raised:
            await client.get(f"/shelves/{shelf_id}")
        assert_names_the_fix(raised.value, "Shelf.books", "selectinload(Shelf.books)")

        # The fix from the message works.
        response = await client.get(f"/shelves/{shelf_id}/with-books")
        assert response.status_code == 200
        assert sorted(book["title"] for book in response.json()["books"]) == ["book 0", "book 1"]


async def test_failed_response_serialization_answers_500_and_stores_nothing(
    app_db: tuple[FastAPI, Database],
) -> None:
    app, db = app_db
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/shelves", params={"name": "never"})

    assert response.status_code == 500
    async with db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(Shelf)) == 0
