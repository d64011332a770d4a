"""The web side: one session per request, committed before the response is sent.

Run: ``NOTES_DB_URL=sqlite+aiosqlite:///./notes.db uv run uvicorn examples.notes_app:app``
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from sqlmodel import SQLModel, select

from examples.notes_db import Note, db
from sessionwise.fastapi import ReadSessionDep, SessionDep


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with db.lifespan(app):
        async with db.engine.begin() as connection:  # demo only; real apps use migrations
            await connection.run_sync(SQLModel.metadata.create_all)
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/notes", status_code=201)
async def create_note(text: str, session: SessionDep) -> Note:
    note = Note(text=text)
    session.add(note)
    await session.flush()  # assigns the id; the commit happens before the 201 is sent
    return note


@app.get("/notes/{note_id}")
async def read_note(note_id: int, session: ReadSessionDep) -> Note:
    note = await session.get(Note, note_id)
    if note is None:
        raise HTTPException(404, "no such note")
    return note


@app.get("/notes")
async def list_notes(session: ReadSessionDep) -> list[Note]:
    return list(await session.exec(select(Note).where(Note.archived == False)))  # noqa: E712
