"""Schema migrations (Alembic, scripts in ``taskyard/migrations``), run on a sessionwise engine."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from sessionwise import Database

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]


def alembic_config() -> Config:
    """The Alembic configuration, with no ini file: the scripts ship inside the package."""
    config = Config()
    config.set_main_option("script_location", "taskyard:migrations")
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    """Apply pending migrations up to *revision* on *db* (started), in one transaction."""
    async with db.engine.connect() as connection:
        await connection.run_sync(_upgrade, revision)
        await connection.commit()


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # The service's statement and lock timeouts bound request work; a migration may run
        # long, and waits here for another process's migration (SET LOCAL: this transaction).
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text("SET LOCAL lock_timeout = 0"))
        # Two processes migrating at once (`serve` and `users create` started together)
        # would both try to create the tables; the second waits here, then finds nothing to
        # do. Released at commit.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('taskyard.migrate'))"))
    config = alembic_config()
    # env.py takes this connection instead of making an engine (Alembic cookbook, "Sharing a
    # Connection across one or more programmatic migration commands").
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
