"""The default session serves plain SQLAlchemy without deprecation noise (issue 9, finding 6).

pytest runs with ``filterwarnings = error``: a DeprecationWarning from SQLModel's ``execute()``
fails these tests, as it did before `sessionwise.Session` took ``execute()`` back.
"""

from __future__ import annotations

import warnings

from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlmodel import Field, SQLModel
from sqlmodel import select as sqlmodel_select
from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession

from sessionwise import Database, Session


class Base(DeclarativeBase):
    pass


class Plain(Base):
    __tablename__ = "session_class_plain"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Modelled(SQLModel, table=True):
    __tablename__ = "session_class_modelled"
    id: int | None = Field(default=None, primary_key=True)
    name: str


async def test_plain_models_on_the_default_session_without_warnings(database_url: str) -> None:
    async with Database(database_url) as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # also under a pytest without filterwarnings
            async with db.session() as session:
                assert isinstance(session, Session)
                assert isinstance(session, SQLModelAsyncSession)  # still SQLModel's session
                session.add_all([Plain(id=1, name="a"), Plain(id=2, name="b")])
            async with db.read_session() as session:
                rows = (await session.execute(select(Plain).order_by(Plain.id))).scalars().all()
                assert [row.name for row in rows] == ["a", "b"]
                names = (await session.scalars(select(Plain.name).order_by(Plain.id))).all()
                assert names == ["a", "b"]
                assert await session.scalar(select(Plain.name).where(Plain.id == 2)) == "b"


async def test_sqlmodel_exec_still_works(database_url: str) -> None:
    async with Database(database_url) as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(Modelled.metadata.create_all, tables=[Modelled.__table__])
        async with db.session() as session:
            session.add(Modelled(name="x"))
        async with db.read_session() as session:
            found = (await session.exec(sqlmodel_select(Modelled))).all()
            assert [item.name for item in found] == ["x"]
