"""Reading a served app's database behind its back, on a fresh connection of our own.

What the service *answered* proves nothing about what it *stored*; fault tests check the rows
themselves, through a connection the app never touched.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url


def asyncpg_dsn(url: str) -> str:
    """The libpq-style DSN asyncpg wants, from a ``postgresql+asyncpg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def pg_fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def pg_execute(url: str, sql: str, *args: Any) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return str(await connection.execute(sql, *args))
    finally:
        await connection.close()


def sqlite_fetch(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    path = make_url(url).database
    assert path, f"not a SQLite file URL: {url}"
    connection = sqlite3.connect(path, timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


async def fetch_rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """*sql* (with ``$1``-style placeholders, used in order) on PostgreSQL or SQLite alike."""
    if make_url(url).get_backend_name() == "sqlite":
        return sqlite_fetch(url, re.sub(r"\$\d+", "?", sql), *args)
    return [tuple(row) for row in await pg_fetch(url, sql, *args)]
