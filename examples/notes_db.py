"""The one `Database` and the models that the web app and the background job share."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

from sessionwise import Database, DatabaseSettings

# Options come from the environment (NOTES_DB_URL, NOTES_DB_POOL_TIMEOUT, ...); without
# NOTES_DB_URL this raises ConfigurationError: there is no default database. Creating the
# Database opens nothing: the app's lifespan or the job's `async with db:` starts it.
db = Database(settings=DatabaseSettings(_env_prefix="NOTES_DB_"))


class Note(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    text: str = Field(max_length=500)
    archived: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
