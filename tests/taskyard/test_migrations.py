"""The migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

import taskyard.app  # noqa: F401  (imports every model)
from taskyard.app import create_database
from taskyard.migrate import alembic_config, current_revision, head_revision, upgrade
from taskyard.settings import Settings
from taskyard.tables import metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _downgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def test_migrations_match_the_models_and_downgrade_cleanly(database_url: str) -> None:
    async with create_database(Settings(database_url=database_url)) as db:
        await upgrade(db)
        assert await current_revision(db) == head_revision() == "0004"
        async with db.engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert set(metadata.tables) <= tables

        async with db.engine.begin() as connection:
            await connection.run_sync(_downgrade)
        async with db.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert not set(metadata.tables) & tables
        assert await current_revision(db) is None

        await upgrade(db)  # and back up again
        assert await current_revision(db) == head_revision() == "0004"
