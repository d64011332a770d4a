"""The migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

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
        assert await current_revision(db) == head_revision() == "v0005_board_sessions"
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
        assert await current_revision(db) == head_revision() == "v0005_board_sessions"


async def test_existing_tasks_survive_the_queue_migration(database_url: str) -> None:
    """From 0003 to the queue's schema with tasks in place: they keep everything and become
    claimable since their creation, with their project's default attempts."""
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    async with create_database(Settings(database_url=database_url)) as db:
        await upgrade(db, "0003")
        async with db.engine.begin() as connection:
            for statement, params in _V0003_ROWS:
                await connection.execute(text(statement), {"at": created, **params})
        await upgrade(db)
        assert await current_revision(db) == head_revision()
        async with db.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT id, title, status, priority, version, assignee_id, attempts, "
                        "max_attempts, run_after = created_at, payload, result, last_error "
                        "FROM tasks ORDER BY id"
                    )
                )
            ).all()
            project_attempts = (
                await connection.execute(text("SELECT max_attempts FROM projects"))
            ).scalar_one()
        assert project_attempts == 3
        assert [row[:9] for row in rows] == [
            (1, "write docs", "pending", 5, 1, None, 0, 3, True),
            (2, "fix bug", "in_progress", 0, 2, 1, 0, 3, True),
        ]
        assert all(row[9:] == (None, None, None) for row in rows)
        async with db.engine.connect() as connection:
            assert await connection.run_sync(_differences) == []


_V0003_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("INSERT INTO users (id, email, name, created_at) VALUES (1, 'a@x.org', 'a', :at)", {}),
    (
        "INSERT INTO projects (id, name, description, owner_id, created_at, updated_at) "
        "VALUES (1, 'p', '', 1, :at, :at)",
        {},
    ),
    (
        "INSERT INTO project_members (project_id, user_id, role, created_at) "
        "VALUES (1, 1, 'owner', :at)",
        {},
    ),
    (
        "INSERT INTO workers (id, project_id, name, created_at, updated_at) "
        "VALUES (1, 1, 'w', :at, :at)",
        {},
    ),
    (
        "INSERT INTO tasks (id, project_id, title, description, status, priority, assignee_id, "
        "version, created_at, updated_at, lease_expires_at) VALUES "
        "(1, 1, 'write docs', '', 'pending', 5, NULL, 1, :at, :at, NULL), "
        "(2, 1, 'fix bug', '', 'in_progress', 0, 1, 2, :at, :at, :at)",
        {},
    ),
]
