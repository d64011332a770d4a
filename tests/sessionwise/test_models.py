"""SQLModel and plain SQLAlchemy models, with the default session class and with SQLAlchemy's.

The default session class is SQLModel's `AsyncSession` (``exec()`` with typed results). Plain
`DeclarativeBase` models work through it too, and through
``Database(url, session_class=sqlalchemy.ext.asyncio.AsyncSession)``, with the same
commit-or-rollback rules and the same guards.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import String, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession

from sessionwise import Database, LazyLoadError


class HeroModel(SQLModel, registry=registry()):
    """Tables of this module, kept out of SQLModel.metadata that other code creates whole."""


class Hero(HeroModel, table=True):
    __tablename__ = "models_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=30)
    age: int | None = None


class Base(DeclarativeBase):
    pass


class Planet(Base):
    __tablename__ = "models_planet"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))


class Failure(Exception):
    pass


async def create_tables(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(HeroModel.metadata.create_all)
        await connection.run_sync(Base.metadata.create_all)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url) as database:
        await create_tables(database)
        yield database
        assert database.pool_status().checked_out == 0


@pytest.fixture
async def plain_db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url, session_class=AsyncSession) as database:
        await create_tables(database)
        yield database
        assert database.pool_status().checked_out == 0


# -- SQLModel, default session class ---------------------------------------------------------


async def test_default_session_class_is_sqlmodels_async_session(db: Database) -> None:
    async with db.session() as session:
        assert isinstance(session, SQLModelAsyncSession)
    async with db.read_session() as session:
        assert isinstance(session, SQLModelAsyncSession)


async def test_sqlmodel_exec_returns_models_scalars_and_rows(db: Database) -> None:
    async with db.session() as session:
        session.add_all([Hero(name="Deadpond", age=30), Hero(name="Spider-Boy", age=None)])

    async with db.read_session() as session:
        heroes = (await session.exec(select(Hero).order_by(Hero.name))).all()
        names = (await session.exec(select(Hero.name).order_by(Hero.name))).all()
        pairs = (await session.exec(select(Hero.name, Hero.age).order_by(Hero.name))).all()
        deadpond = (await session.exec(select(Hero).where(Hero.name == "Deadpond"))).one()
        count = await session.scalar(select(func.count()).select_from(Hero))

    assert all(isinstance(hero, Hero) for hero in heroes)
    assert [hero.name for hero in heroes] == ["Deadpond", "Spider-Boy"]
    assert names == ["Deadpond", "Spider-Boy"]
    assert [tuple(pair) for pair in pairs] == [("Deadpond", 30), ("Spider-Boy", None)]
    assert deadpond.age == 30
    assert count == 2


@pytest.mark.parametrize("fail", [False, True], ids=["commits", "rolls-back"])
async def test_sqlmodel_models_commit_or_roll_back(db: Database, fail: bool) -> None:
    with pytest.raises(Failure) if fail else nullcontext():
        async with db.session() as session:
            session.add(Hero(name="Rusty-Man"))
            await session.flush()
            if fail:
                raise Failure

    async with db.read_session() as session:
        stored = (await session.exec(select(Hero.name))).all()
    assert stored == ([] if fail else ["Rusty-Man"])


def test_sqlmodel_exec_results_are_typed_for_mypy(tmp_path: Path) -> None:
    """What ``mypy --strict`` infers for ``exec()`` through a sessionwise session."""
    module = tmp_path / "typed_reads.py"
    module.write_text(
        textwrap.dedent(
            """
            from collections.abc import Sequence
            from typing import assert_type

            from sqlmodel import Field, SQLModel, select

            from sessionwise import Database


            class TypedHero(SQLModel, table=True):
                id: int | None = Field(default=None, primary_key=True)
                name: str


            async def read(db: Database) -> None:
                async with db.session() as session:
                    heroes = (await session.exec(select(TypedHero))).all()
                    assert_type(heroes, Sequence[TypedHero])
                    names = (await session.exec(select(TypedHero.name))).all()
                    assert_type(names, Sequence[str])
                    assert_type(await session.get(TypedHero, 1), TypedHero | None)
            """
        )
    )
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    command += ["--config-file", str(config), str(module)]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=110, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- plain SQLAlchemy models -----------------------------------------------------------------


async def test_plain_models_with_sqlalchemy_session_class(plain_db: Database) -> None:
    async with plain_db.session() as session:
        assert isinstance(session, AsyncSession)
        assert not isinstance(session, SQLModelAsyncSession)
        session.add_all([Planet(name="mars"), Planet(name="venus")])

    async with plain_db.read_session() as session:
        result = await session.execute(sqlalchemy.select(Planet).order_by(Planet.name))
        planets = result.scalars().all()
        names = (await session.scalars(sqlalchemy.select(Planet.name))).all()

    assert [planet.name for planet in planets] == ["mars", "venus"]
    assert sorted(names) == ["mars", "venus"]


async def test_plain_models_with_default_session_class(db: Database) -> None:
    async with db.session() as session:
        session.add_all([Planet(name="mars"), Planet(name="venus")])

    async with db.read_session() as session:
        planets = (await session.exec(select(Planet).order_by(Planet.name))).all()
        rows = (await session.exec(sqlalchemy.select(Planet.name).order_by(Planet.name))).all()
        mars = await session.get(Planet, planets[0].id)
        venus = await session.scalar(sqlalchemy.select(Planet).where(Planet.name == "venus"))

    assert all(isinstance(planet, Planet) for planet in planets)
    assert [planet.name for planet in planets] == ["mars", "venus"]
    assert [tuple(row) for row in rows] == [("mars",), ("venus",)]
    assert mars is not None
    assert mars.name == "mars"
    assert venus is not None
    assert venus.name == "venus"


@pytest.mark.parametrize("session_class", ["default", "sqlalchemy"])
@pytest.mark.parametrize("fail", [False, True], ids=["commits", "rolls-back"])
async def test_plain_models_commit_or_roll_back_with_either_session_class(
    database_url: str, session_class: str, fail: bool
) -> None:
    options = {"session_class": AsyncSession} if session_class == "sqlalchemy" else {}
    async with Database(database_url, **options) as db:
        await create_tables(db)
        with pytest.raises(Failure) if fail else nullcontext():
            async with db.session() as session:
                session.add(Planet(name="pluto"))
                await session.flush()
                if fail:
                    raise Failure

        async with db.read_session() as session:
            stored = await session.scalar(sqlalchemy.select(func.count()).select_from(Planet))
        assert stored == (0 if fail else 1)


async def test_plain_models_get_the_same_guards(plain_db: Database) -> None:
    async with plain_db.session() as session:
        session.add(Planet(name="saturn"))

    async with plain_db.session() as session:
        planet = await session.scalar(sqlalchemy.select(Planet))
        assert planet is not None
        session.expire(planet)
        with pytest.raises(LazyLoadError, match=r"^Planet\.name is not loaded"):
            _ = planet.name
