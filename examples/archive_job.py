"""The background side: the same Database, the same commit-or-rollback rules.

Run: ``NOTES_DB_URL=sqlite+aiosqlite:///./notes.db uv run python -m examples.archive_job``
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import SQLModel, col, update

from examples.notes_db import Note, db


async def archive_older_than(age: timedelta) -> int:
    """Archive old notes in one transaction; a failure anywhere leaves every note as it was."""
    cutoff = datetime.now(UTC) - age
    async with db.session() as session:  # commits when the block ends, rolls back on error
        result = await session.exec(
            update(Note)
            .where(col(Note.created_at) < cutoff, col(Note.archived).is_(False))
            .values(archived=True)
        )
        return result.rowcount


async def main() -> None:
    async with db:  # start() ... close(), as the web app's lifespan does
        async with db.engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        archived = await archive_older_than(timedelta(days=30))
        print(f"archived {archived} notes")


if __name__ == "__main__":
    asyncio.run(main())
