"""The ``taskyard`` command line: serve, migrate, users, keys, seed, purge.

Commands that print a new API key print it alone on the last line of stdout, so scripts can
take it with ``| tail -n1``. Every command that touches the database applies pending
migrations first, as ``serve`` does (unless ``serve --no-migrate``).
"""

from __future__ import annotations

import asyncio
import enum
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from sessionwise import Database
from taskyard.app import create_database
from taskyard.errors import ProblemError
from taskyard.idempotency import create_store
from taskyard.migrate import current_revision, upgrade
from taskyard.operations.json_logs import log_config
from taskyard.seed import SeedResult
from taskyard.seed import seed as seed_demo
from taskyard.settings import DEFAULT_DATABASE_URL, Settings
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService

__all__ = ["app"]

app = typer.Typer(help="taskyard: a task queue for teams and their agents.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_T = TypeVar("_T")
WORKER_HEALTHCHECK_TIMEOUT = 60  # seconds; see `serve`

DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="TASKYARD_DATABASE_URL",
        help="SQLAlchemy URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    ),
]


class LogFormatChoice(enum.Enum):
    TEXT = "text"
    JSON = "json"


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@asynccontextmanager
async def _migrated(url: str) -> AsyncIterator[Database]:
    settings = Settings(database_url=url)
    async with create_database(settings) as db:
        await upgrade(db)
        yield db


def _run(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run *work*; service errors and invalid input end the command with a message."""
    try:
        return asyncio.run(work())
    except ProblemError as error:
        err.print(f"[red]error:[/red] {error.detail or error.kind.info.title}")
        raise typer.Exit(1) from None
    except ValidationError as error:
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "input"
            err.print(f"[red]error:[/red] --{field}: {item['msg']}")
        raise typer.Exit(2) from None


def _print_key(api_key: str) -> None:
    out.print("API key (shown once, store it now; only its hash is kept):")
    print(api_key, flush=True)  # alone on the last line: `| tail -n1`


@app.command()
def serve(
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply pending migrations first.")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    log_format: Annotated[
        LogFormatChoice, typer.Option(help="text, or json: one JSON object per line.")
    ] = LogFormatChoice.TEXT,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds in-flight requests get to finish on shutdown.")
    ] = 10,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs), after applying pending migrations."""
    # Worker processes build their app from the environment (create_app_from_env), so the
    # URL and one cursor-signing key shared by all of them go there.
    os.environ["TASKYARD_DATABASE_URL"] = database_url
    os.environ.setdefault("TASKYARD_SECRET_KEY", secrets.token_urlsafe(32))
    if not no_migrate:

        async def migrate_now() -> str | None:
            async with _migrated(database_url) as db:
                return await current_revision(db)

        revision = _run(migrate_now)
        err.print(f"taskyard: {_shown(database_url)} at schema revision {revision}")
    uvicorn.run(
        "taskyard.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
        log_config=log_config(log_format.value, log_level),
        timeout_graceful_shutdown=graceful_timeout,
        # uvicorn's supervisor kills a worker that does not answer its health ping within
        # this many seconds (5 by default) and starts another: on a busy host a new worker
        # can take longer than 5 s to start Python and import the app, and every replacement
        # is killed in turn, so `--workers N` never serves (seen on a loaded 2-core machine).
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT,
    )


@app.command()
def migrate(database_url: DatabaseUrl = DEFAULT_DATABASE_URL) -> None:
    """Apply pending schema migrations."""

    async def work() -> str | None:
        async with _migrated(database_url) as db:
            return await current_revision(db)

    revision = _run(work)
    out.print(f"{_shown(database_url)}: schema at revision {revision}")


@app.command()
def purge(database_url: DatabaseUrl = DEFAULT_DATABASE_URL) -> None:
    """Delete expired idempotency records (a running server also does, periodically)."""

    async def work() -> int:
        async with _migrated(database_url) as db:
            return await create_store(Settings(database_url=database_url)).purge(db)

    out.print(f"Purged {_run(work)} expired idempotency records")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Unique, case-insensitive.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
) -> None:
    """Create a user and a first API key; the key is printed once, on the last line."""
    data = _run(lambda: _validated(email=email, name=name))

    async def work() -> tuple[int, str]:
        async with _migrated(database_url) as db, db.session() as session:
            user, issued = await UserService(session).create_user(data, "created with the user")
            assert user.id is not None
            return user.id, issued.api_key

    user_id, api_key = _run(work)
    out.print(f"Created user {user_id} {data.email} ({data.name})")
    _print_key(api_key)


async def _validated(email: str, name: str) -> UserCreate:
    return UserCreate(email=email, name=name)


@keys_app.command("create")
def keys_create(
    email: Annotated[str, typer.Option(help="The user's email.")],
    label: Annotated[str, typer.Option(help="A note to tell keys apart.")] = "",
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
) -> None:
    """Create another API key for a user; printed once, on the last line."""

    async def work() -> tuple[str, str]:
        async with _migrated(database_url) as db, db.session() as session:
            issued = await UserService(session).create_key(email, label[:200])
            return issued.key.key_id, issued.api_key

    key_id, api_key = _run(work)
    out.print(f"Created key {key_id} for {email.lower()}")
    _print_key(api_key)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="Key id (as in `keys list`), ty_<id> or the key.")],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
) -> None:
    """Revoke an API key; requests with it fail with 401 from now on."""

    async def work() -> str:
        async with _migrated(database_url) as db, db.session() as session:
            return (await UserService(session).revoke_key(key)).key_id

    out.print(f"Revoked key {_run(work)}")


@keys_app.command("list")
def keys_list(
    email: Annotated[str, typer.Option(help="The user's email.")],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
) -> None:
    """List a user's keys (ids only; keys themselves are never stored)."""

    async def work() -> list[tuple[str, str, str, str]]:
        async with _migrated(database_url) as db, db.read_session() as session:
            keys = await UserService(session).keys_of(email)
            return [
                (
                    key.key_id,
                    key.label,
                    f"{key.created_at:%Y-%m-%d %H:%M}",
                    "revoked" if key.revoked_at else "active",
                )
                for key in keys
            ]

    table = Table("key id", "label", "created (UTC)", "state")
    for row in _run(work):
        table.add_row(*row)
    out.print(table)


@app.command()
def seed(
    tasks: Annotated[int, typer.Option(min=0, max=1_000_000, help="How many tasks.")] = 100,
    email: Annotated[str, typer.Option(help="The demo user (created if new).")] = (
        "demo@example.com"
    ),
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
) -> None:
    """Create demo data: a user, a project, three workers and --tasks tasks."""
    with Progress(
        TextColumn("seeding tasks"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        bar = progress.add_task("tasks", total=tasks)

        async def work() -> SeedResult:
            async with _migrated(database_url) as db:
                return await seed_demo(
                    db, tasks, email, progress=lambda done: progress.advance(bar, done)
                )

        result = _run(work)
    ids = result.task_ids
    out.print(
        f"Seeded project {result.project_id} for {result.email}: "
        f"workers {result.worker_ids}, tasks {ids.start}..{ids.stop - 1}"
    )
    _print_key(result.api_key)
