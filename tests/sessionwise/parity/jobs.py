"""A background job that imports the module-level `db`, as the README's jobs do."""

from __future__ import annotations

from sqlalchemy import insert

from tests.sessionwise.parity.database import db, notes


async def record(body: str) -> None:
    async with db.session() as session:
        await session.execute(insert(notes).values(body=body))
