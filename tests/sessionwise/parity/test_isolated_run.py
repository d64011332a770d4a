"""The parity scenarios under the test plugin, as a user's test module.

Not collected by the outer run on its own (``collect_ignore`` in this folder's conftest): the
outer test runs a copy in a separate pytest process, with ``PARITY_DATABASE_URL`` and
``PARITY_OUTCOMES`` (a file for the outcomes, one JSON line per scenario) set. Every scenario
is a test of its own, so the module-level `db` is started and closed once per test.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from fastapi import FastAPI

from sessionwise import Database
from tests.sessionwise.parity.app import app
from tests.sessionwise.parity.database import create_schema, db
from tests.sessionwise.parity.scenarios import SCENARIOS, run_scenario


@pytest.fixture
async def sessionwise_database() -> AsyncIterator[Database]:
    async with db:
        await create_schema()
        yield db


@pytest.fixture
def sessionwise_app() -> FastAPI:
    return app


def _scenarios() -> list[object]:
    serializable = pytest.mark.sessionwise_isolation_level("SERIALIZABLE")
    return [
        pytest.param(name, marks=serializable) if name == "serializable_transaction" else name
        for name in SCENARIOS
    ]


@pytest.mark.parametrize("name", _scenarios())
async def test_scenario(name: str, api_client: httpx.AsyncClient) -> None:
    outcome = await run_scenario(name, api_client, "plugin")
    line = json.dumps({name: dataclasses.asdict(outcome)}) + "\n"
    async with await anyio.open_file(os.environ["PARITY_OUTCOMES"], "a") as outcomes:
        await outcomes.write(line)
