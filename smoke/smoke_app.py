"""Smoke test of an installed sessionwise wheel: the package README's quick start, run.

`smoke/install.sh` copies this file into a temporary directory outside the repository and
runs it with the Python of a fresh virtualenv that has only the wheel (and its extras), so the
workspace's sources cannot be imported by accident. It checks that, and then one create and
read round trip and one mapped database error over httpx's ASGI transport, on the session
class sessionwise falls back to without SQLModel.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import httpx

# -- the package README's quick start, literally (smoke/check_dists.py checks that it is) --
from fastapi import FastAPI, HTTPException
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionwise import Database
from sessionwise.fastapi import AsyncSessionDep


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(500), unique=True)


db = Database("sqlite+aiosqlite:///./notes.db", pool_timeout=2.0)  # opens nothing yet
app = FastAPI(lifespan=db.lifespan)  # starts the engine on startup, disposes it on shutdown


@app.post("/notes", status_code=201)
async def create_note(text: str, session: AsyncSessionDep) -> dict[str, int]:
    note = Note(text=text)
    session.add(note)
    await session.flush()  # the id now; the commit runs before the 201 is sent
    return {"id": note.id}  # a duplicate text -> 409 at commit, nothing stored


@app.get("/notes/{note_id}")
async def read_note(note_id: int, session: AsyncSessionDep) -> dict[str, str]:
    text = await session.scalar(select(Note.text).where(Note.id == note_id))
    if text is None:
        raise HTTPException(404, "no such note")
    return {"text": text}


# -- the checks --------------------------------------------------------------------------


def _installed_from_the_wheel() -> None:
    import sessionwise

    where = Path(sessionwise.__file__).resolve()
    if Path(sys.prefix).resolve() not in where.parents:
        raise SystemExit(f"sessionwise imported from {where}, not from the venv {sys.prefix}")
    for path in map(Path, sys.path):
        if (path / "packages" / "sessionwise").is_dir():
            raise SystemExit(f"the repository is on sys.path ({path}): not a clean install")
    try:  # installed without the sqlmodel extra: the fallback session class is in use
        import sqlmodel  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("sqlmodel is installed: the smoke install must run without it")
    print(f"sessionwise {sessionwise.__version__} from {where.parent}")


async def _round_trip() -> None:
    async with db.lifespan(app):
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smoke") as client:
            created = await client.post("/notes", params={"text": "hello"})
            assert created.status_code == 201, created.text
            note_id = created.json()["id"]
            read = await client.get(f"/notes/{note_id}")
            assert read.json() == {"text": "hello"}, read.text
            duplicate = await client.post("/notes", params={"text": "hello"})
            assert duplicate.status_code == 409, (duplicate.status_code, duplicate.text)
            assert (await client.get("/notes/2")).status_code == 404
    print("create, read, duplicate (409), missing (404): as expected")


def main() -> None:
    _installed_from_the_wheel()
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)  # ./notes.db lands here
        asyncio.run(_round_trip())


if __name__ == "__main__":
    main()
