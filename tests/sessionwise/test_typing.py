"""`mypy --strict` sees which session a Database hands out (issue 9, finding 6).

`make test` runs mypy over examples/ (one app per session flavour); this test shows that the
check can fail: mypy, run on snippets, reports ``session.exec`` on a plain `AsyncSession`
(from ``db.read_session()`` or ``AsyncSessionDep``; it does not exist at run time) and a
wrongly typed ``execute()`` result, and accepts the same code written correctly.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = """\
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionwise import Database


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


plain = Database("sqlite+aiosqlite://", session_class=AsyncSession)
default = Database("sqlite+aiosqlite://")
"""

RIGHT = (
    """\
from collections.abc import AsyncIterator
from typing import Annotated

from sessionwise.fastapi import SessionStreamingResponse, database_dependencies
from sessionwise.testing import isolated
"""
    + COMMON
    + """

async def names() -> list[str]:
    async with plain.read_session() as session:
        return list((await session.scalars(select(Item.name))).all())


async def first_name() -> str | None:
    async with default.session() as session:  # SQLModel's session, SQLAlchemy's execute()
        return (await session.execute(select(Item.name))).scalar_one_or_none()


async def count(session: AsyncSession) -> int:
    return len((await session.scalars(select(Item))).all())


async def counted() -> int:
    return await plain.run_transaction(count)


# The adapters take either flavour of Database.
plain_dependencies = database_dependencies(plain)
PlainSession = Annotated[AsyncSession, plain_dependencies.session]


async def rows(session: AsyncSession) -> AsyncIterator[str]:
    yield "row"


def export() -> SessionStreamingResponse:
    return SessionStreamingResponse(plain, rows)


async def isolated_plain() -> None:
    async with isolated(plain):
        pass
"""
)

WRONG = (
    COMMON.replace(
        "from sessionwise import Database\n",
        "from sessionwise import Database\nfrom sessionwise.fastapi import AsyncSessionDep\n",
    )
    + """

async def names() -> list[str]:
    async with plain.read_session() as session:
        return list((await session.exec(select(Item.name))).all())  # line 25


async def first_name() -> int | None:
    async with default.session() as session:
        return (await session.execute(select(Item.name))).scalar_one_or_none()  # line 30


async def route(session: AsyncSessionDep) -> list[str]:
    return list((await session.exec(select(Item.name))).all())  # line 34
"""
)


def _mypy(directory: Path, *files: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(directory / ".mypy_cache"),
            *files,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert not result.stderr, result.stderr
    return result.stdout


@pytest.mark.timeout(300)
def test_mypy_reports_what_would_fail_at_run_time(tmp_path: Path) -> None:
    (tmp_path / "right.py").write_text(RIGHT)
    (tmp_path / "wrong.py").write_text(WRONG)
    output = _mypy(tmp_path, "right.py", "wrong.py")
    errors = sorted(set(re.findall(r"^(\w+\.py):(\d+): error: .*\[([\w-]+)\]$", output, re.M)))
    assert errors == [
        ("wrong.py", "25", "attr-defined"),  # session.exec on db.read_session()
        ("wrong.py", "30", "return-value"),  # execute() result typed by the statement
        ("wrong.py", "34", "attr-defined"),  # session.exec on AsyncSessionDep
    ], output
    assert '"AsyncSession" has no attribute "exec"' in output
