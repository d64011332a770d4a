"""A plain-SQLAlchemy web app and job on one `Database[AsyncSession]`.

Run: ``BOOKMARKS_DB_URL=sqlite+aiosqlite:///./bookmarks.db uv run uvicorn examples.plain_app:app``
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select

from examples.plain_db import Base, Bookmark, db
from sessionwise.fastapi import AsyncReadSessionDep, AsyncSessionDep


class BookmarkIn(BaseModel):
    url: str = Field(max_length=500)
    title: str = Field(max_length=200)


class BookmarkOut(BookmarkIn):
    model_config = ConfigDict(from_attributes=True)

    id: int


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with db.lifespan(app):
        async with db.engine.begin() as connection:  # demo only; real apps use migrations
            await connection.run_sync(Base.metadata.create_all)
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/bookmarks", status_code=201)
async def add_bookmark(data: BookmarkIn, session: AsyncSessionDep) -> BookmarkOut:
    bookmark = Bookmark(url=data.url, title=data.title)
    session.add(bookmark)
    await session.flush()  # a duplicate url -> 409 when the dependency commits
    return BookmarkOut.model_validate(bookmark)


@app.get("/bookmarks/{bookmark_id}")
async def read_bookmark(bookmark_id: int, session: AsyncReadSessionDep) -> BookmarkOut:
    bookmark = await session.get(Bookmark, bookmark_id)
    if bookmark is None:
        raise HTTPException(404, "no such bookmark")
    return BookmarkOut.model_validate(bookmark)


@app.get("/bookmarks")
async def search(session: AsyncReadSessionDep, q: str = "") -> list[BookmarkOut]:
    found = await session.scalars(
        select(Bookmark).where(Bookmark.title.contains(q)).order_by(Bookmark.id)
    )
    return [BookmarkOut.model_validate(bookmark) for bookmark in found]


async def count_bookmarks() -> int:
    """A job's read: the same Database, a plain session, a typed result."""
    async with db.read_session() as session:
        count: int = await session.scalar(select(func.count()).select_from(Bookmark)) or 0
        return count


async def forget(title_part: str) -> list[int]:
    """A job's write: committed when the block ends, rolled back on an error."""
    async with db.session() as session:
        gone = await session.scalars(
            delete(Bookmark).where(Bookmark.title.contains(title_part)).returning(Bookmark.id)
        )
        return list(gone.all())
