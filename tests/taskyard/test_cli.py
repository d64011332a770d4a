"""The command line, in-process (Typer's runner, in a worker thread: each command runs its
own event loop), on both backends."""

from __future__ import annotations

from functools import partial

import anyio
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from taskyard.app import create_database
from taskyard.cli import app
from taskyard.migrate import current_revision, head_revision
from taskyard.settings import Settings
from taskyard.users.service import Caller, UserService


async def taskyard(*args: str) -> Result:
    runner = CliRunner()
    return await anyio.to_thread.run_sync(partial(runner.invoke, app, list(args)))


async def _authenticate(url: str, api_key: str) -> Caller | None:
    async with create_database(Settings(database_url=url)) as db, db.read_session() as session:
        return await UserService(session).authenticate(api_key)


async def test_migrate_on_a_fresh_database_creates_the_schema_once(database_url: str) -> None:
    first = await taskyard("migrate", "--database-url", database_url)
    assert first.exit_code == 0, first.output
    assert "revision v0004_task_queue" in first.output
    again = await taskyard("migrate", "--database-url", database_url)  # nothing pending: no-op
    assert again.exit_code == 0, again.output
    async with create_database(Settings(database_url=database_url)) as db:
        assert await current_revision(db) == head_revision() == "v0004_task_queue"
        async with db.read_session() as session:
            for table in ("users", "api_keys", "projects", "project_members", "workers", "tasks"):
                assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 0


async def test_users_create_prints_a_working_key_alone_on_the_last_line(database_url: str) -> None:
    result = await taskyard(
        "users",
        "create",
        "--email",
        "Ada@Example.COM",
        "--name",
        "Ada",
        "--database-url",
        database_url,
    )
    assert result.exit_code == 0, result.output
    *_, last = result.stdout.rstrip("\n").split("\n")
    assert last.startswith("ty_")
    assert " " not in last
    caller = await _authenticate(database_url, last)
    assert caller is not None
    assert caller.email == "ada@example.com"

    duplicate = await taskyard(
        "users",
        "create",
        "--email",
        "ada@example.com",
        "--name",
        "Ada",
        "--database-url",
        database_url,
    )
    assert duplicate.exit_code == 1
    assert "exists" in duplicate.output


async def test_keys_create_list_and_revoke(sqlite_url: str) -> None:
    created = await taskyard(
        "users", "create", "--email", "a@example.com", "--name", "A", "--database-url", sqlite_url
    )
    first_key = created.stdout.splitlines()[-1]
    second = await taskyard(
        "keys", "create", "--email", "a@example.com", "--label", "ci", "--database-url", sqlite_url
    )
    assert second.exit_code == 0, second.output
    second_key = second.stdout.splitlines()[-1]
    assert second_key.startswith("ty_")
    assert second_key != first_key

    listed = await taskyard(
        "keys", "list", "--email", "a@example.com", "--database-url", sqlite_url
    )
    key_id = second_key[3:15]
    assert key_id in listed.stdout
    assert "ci" in listed.stdout
    assert second_key not in listed.stdout
    assert first_key not in listed.stdout

    revoked = await taskyard("keys", "revoke", key_id, "--database-url", sqlite_url)
    assert revoked.exit_code == 0, revoked.output
    assert await _authenticate(sqlite_url, second_key) is None
    assert await _authenticate(sqlite_url, first_key) is not None
    # By the printed prefix, too.
    assert (
        await taskyard("keys", "revoke", first_key[:15], "--database-url", sqlite_url)
    ).exit_code == 0
    assert await _authenticate(sqlite_url, first_key) is None

    unknown = await taskyard("keys", "revoke", "000000000000", "--database-url", sqlite_url)
    assert unknown.exit_code == 1


@pytest.mark.parametrize(
    ("email", "name", "field"),
    [
        ("not-an-email", "A", "--email"),
        ("a@example.com", " ", "--name"),
        ("a\x00@x.io", "A", "--email"),
    ],
)
async def test_users_create_refuses_invalid_input(
    sqlite_url: str, email: str, name: str, field: str
) -> None:
    result = await taskyard(
        "users", "create", "--email", email, "--name", name, "--database-url", sqlite_url
    )
    assert result.exit_code == 2
    assert field in result.output


async def test_seed_creates_demo_data_and_prints_its_key_last(sqlite_url: str) -> None:
    result = await taskyard("seed", "--tasks", "1201", "--database-url", sqlite_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "tasks 1..1201" in lines[-3]
    caller = await _authenticate(sqlite_url, lines[-1])
    assert caller is not None
    async with (
        create_database(Settings(database_url=sqlite_url)) as db,
        db.read_session() as session,
    ):
        assert await session.scalar(text("SELECT count(*) FROM tasks")) == 1201
        assert await session.scalar(text("SELECT count(*) FROM workers")) == 3
    # Seeding again reuses the demo user with a new key and a new project.
    again = await taskyard("seed", "--tasks", "2", "--database-url", sqlite_url)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1] != lines[-1]
