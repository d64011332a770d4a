"""The parity app: one route per scenario, on the module-level `db` (``db.lifespan``).

Served by uvicorn for real (``uvicorn tests.sessionwise.parity.app:app``) and, under the test
plugin, through ``api_client``; `tests.sessionwise.parity.scenarios` drives both alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, HTTPException
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise.fastapi import AsyncReadSessionDep, AsyncSessionDep
from tests.sessionwise.parity import jobs
from tests.sessionwise.parity.database import create_schema, db, notes


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with db.lifespan(app):
        await create_schema()
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/notes")
async def list_notes(prefix: str, session: AsyncReadSessionDep) -> list[str]:
    query = select(notes.c.body).where(notes.c.body.startswith(prefix)).order_by(notes.c.body)
    return list((await session.scalars(query)).all())


@app.post("/notes", status_code=201)
async def create(body: str, session: AsyncSessionDep) -> str:
    await session.execute(insert(notes).values(body=body))
    return body


@app.post("/notes/failing", status_code=201)
async def create_then_fail(body: str, session: AsyncSessionDep) -> str:
    await session.execute(insert(notes).values(body=body))
    await session.flush()
    raise HTTPException(status_code=400, detail="refused after writing")


@app.post("/notes/from-a-read-session", status_code=201)
async def write_in_a_read_session(body: str, session: AsyncReadSessionDep) -> str:
    await session.execute(insert(notes).values(body=body))
    return body


async def audit(body: str) -> None:
    # The bug under test: a helper opening its own session instead of taking the caller's.
    async with db.session() as session:
        await session.execute(insert(notes).values(body=f"{body} (audit)"))


@app.post("/notes/nested", status_code=201)
async def create_with_nested_session(body: str, session: AsyncSessionDep) -> str:
    await session.execute(insert(notes).values(body=body))
    await session.flush()
    await audit(body)
    return body


@app.post("/notes/pair", status_code=201)
async def create_from_two_tasks(body: str) -> list[str]:
    async def write(suffix: str) -> str:
        async with db.session() as session:
            await session.execute(insert(notes).values(body=f"{body} {suffix}"))
            await asyncio.sleep(0)  # let the other task in between its statements
            await session.execute(insert(notes).values(body=f"{body} {suffix}+"))
        return suffix

    return list(await asyncio.gather(write("a"), write("b")))


@app.post("/notes/later", status_code=202)
async def create_in_a_background_job(body: str, tasks: BackgroundTasks) -> str:
    tasks.add_task(jobs.record, body)
    return body


@app.post("/notes/serializable", status_code=201)
async def create_serializable(body: str) -> str | None:
    async def work(session: AsyncSession) -> str | None:
        await session.execute(insert(notes).values(body=body))
        if session.bind is not None and session.bind.dialect.name == "sqlite":
            return "serializable"  # SQLite's only level
        level: str | None = await session.scalar(text("SHOW transaction_isolation"))
        return level

    return await db.run_transaction(work, isolation_level="SERIALIZABLE")
