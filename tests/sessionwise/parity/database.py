"""The parity app's module-level `Database` and table, as the README writes them.

The URL comes from ``PARITY_DATABASE_URL``: the served app (uvicorn in a subprocess) and the
plugin's inner pytest process each import this module with the database the outer test gives.
"""

from __future__ import annotations

import os

from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import Database

db = Database(
    os.environ.get("PARITY_DATABASE_URL", "sqlite+aiosqlite://"),
    session_class=AsyncSession,
    pool_timeout=5.0,
)

metadata = MetaData()
notes = Table("parity_note", metadata, Column("body", String(100), primary_key=True))


async def create_schema() -> None:
    # Through db.session(), not db.engine: under the test plugin the lifespan's startup work
    # then joins the test's transaction instead of waiting behind it for SQLite's write lock.
    async with db.session() as session:
        await session.run_sync(lambda sync: metadata.create_all(sync.connection()))
