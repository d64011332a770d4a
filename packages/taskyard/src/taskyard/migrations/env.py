"""Alembic environment: taskyard's metadata, on a connection handed over or a new engine.

``taskyard migrate`` / ``taskyard serve`` pass a connection (``taskyard.migrate.upgrade``).
Run by the ``alembic`` command instead (``alembic -c <package>/alembic.ini revision
--autogenerate -m ...``), it connects to ``TASKYARD_DATABASE_URL`` through sessionwise.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from taskyard import idempotency as _idempotency  # noqa: F401
from taskyard.board import models as _board  # noqa: F401
from taskyard.projects import models as _projects  # noqa: F401
from taskyard.settings import Settings
from taskyard.tables import metadata
from taskyard.tasks import models as _tasks  # noqa: F401
from taskyard.users import models as _users  # noqa: F401  (register the tables)
from taskyard.workers import models as _workers  # noqa: F401


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_new_engine() -> None:
    from taskyard.app import create_database

    async with create_database(Settings()) as db, db.engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
else:
    asyncio.run(_run_on_new_engine())
