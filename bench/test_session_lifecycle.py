"""Micro-benchmark: the cost of one unit of work, session against bare connection.

One unit of work is: open, one query (``SELECT 1``), commit, close. It is timed through

* ``Database.session()`` with sessionwise's defaults (what every taskyard request pays),
* ``Database.session()`` with ``pool_pre_ping=False`` (the share of the pre-ping round trip),
* ``Database.read_session()`` (taskyard's GET endpoints; READ ONLY and no commit),
* a bare SQLAlchemy ``AsyncConnection`` from an engine with the same pool (the floor under
  the ORM session).

Deselected from the default test run (``-m 'not benchmark'``); ``make bench`` runs it with
``pytest bench/test_session_lifecycle.py -m benchmark``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sessionwise import Database

pytestmark = pytest.mark.benchmark

SELECT_ONE = text("SELECT 1")


def timed(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    unit_of_work: Callable[[], Coroutine[Any, Any, object]],
) -> None:
    # Warm the pool first, so every variant is timed with its connection already open.
    assert loop.run_until_complete(unit_of_work()) == 1
    result = benchmark(lambda: loop.run_until_complete(unit_of_work()))
    assert result == 1


@pytest.fixture
def database(
    benchmark_url: str, event_loop_for_benchmarks: asyncio.AbstractEventLoop
) -> Iterator[Database]:
    db = Database(benchmark_url)
    event_loop_for_benchmarks.run_until_complete(db.start())
    yield db
    event_loop_for_benchmarks.run_until_complete(db.close())


@pytest.fixture
def database_without_pre_ping(
    benchmark_url: str, event_loop_for_benchmarks: asyncio.AbstractEventLoop
) -> Iterator[Database]:
    db = Database(benchmark_url, pool_pre_ping=False)
    event_loop_for_benchmarks.run_until_complete(db.start())
    yield db
    event_loop_for_benchmarks.run_until_complete(db.close())


@pytest.fixture
def bare_engine(
    benchmark_url: str, event_loop_for_benchmarks: asyncio.AbstractEventLoop
) -> Iterator[AsyncEngine]:
    engine = create_async_engine(benchmark_url, pool_size=5, max_overflow=10)
    yield engine
    event_loop_for_benchmarks.run_until_complete(engine.dispose())


def test_database_session(
    benchmark: BenchmarkFixture,
    event_loop_for_benchmarks: asyncio.AbstractEventLoop,
    database: Database,
) -> None:
    async def unit_of_work() -> object:
        async with database.session() as session:
            return await session.scalar(SELECT_ONE)

    timed(benchmark, event_loop_for_benchmarks, unit_of_work)


def test_database_session_without_pre_ping(
    benchmark: BenchmarkFixture,
    event_loop_for_benchmarks: asyncio.AbstractEventLoop,
    database_without_pre_ping: Database,
) -> None:
    async def unit_of_work() -> object:
        async with database_without_pre_ping.session() as session:
            return await session.scalar(SELECT_ONE)

    timed(benchmark, event_loop_for_benchmarks, unit_of_work)


def test_database_read_session(
    benchmark: BenchmarkFixture,
    event_loop_for_benchmarks: asyncio.AbstractEventLoop,
    database: Database,
) -> None:
    async def unit_of_work() -> object:
        async with database.read_session() as session:
            return await session.scalar(SELECT_ONE)

    timed(benchmark, event_loop_for_benchmarks, unit_of_work)


def test_bare_async_connection(
    benchmark: BenchmarkFixture,
    event_loop_for_benchmarks: asyncio.AbstractEventLoop,
    bare_engine: AsyncEngine,
) -> None:
    async def unit_of_work() -> object:
        async with bare_engine.connect() as connection:
            value = await connection.scalar(SELECT_ONE)
            await connection.commit()
            return value

    timed(benchmark, event_loop_for_benchmarks, unit_of_work)
