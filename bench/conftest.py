"""Fixtures of the micro-benchmarks: a scratch PostgreSQL database and SQLite file, and a loop.

The benchmarks are synchronous tests (pytest-benchmark times plain callables) that drive one
uvloop event loop, the loop the served apps use.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from bench import databases


@pytest.fixture(scope="session")
def event_loop_for_benchmarks() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="session")
def postgres_benchmark_url() -> Iterator[str]:
    name = f"bench_micro_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(databases.recreate_database(name))
    try:
        yield url
    finally:
        asyncio.run(databases.drop_database(name))


@pytest.fixture(scope="session")
def sqlite_benchmark_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("bench-micro") / "micro.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["postgres", "sqlite"])
def benchmark_url(request: pytest.FixtureRequest) -> str:
    fixture = f"{request.param}_benchmark_url"
    url: str = request.getfixturevalue(fixture)
    return url
