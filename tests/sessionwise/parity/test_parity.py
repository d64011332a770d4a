"""Parity: the same scenarios under the test plugin and against the app served for real.

Issue 9: "a parity suite runs the same scenarios once under the plugin and once against the app
served for real, and asserts identical outcomes". The app (`tests.sessionwise.parity.app`) uses
the README's shape: a module-level `db`, ``db.lifespan``, a background job importing ``db``.

* Served: uvicorn in a subprocess on a loopback port; every scenario over real HTTP.
* Plugin: a separate pytest process runs `test_isolated_run.py`, one test per scenario through
  ``api_client`` (many tests in a row on the one module-level `db`).

Both runs use the same database (their rows carry different prefixes) and must agree on every
status code, every stored row and the answers that matter; the expected outcomes are spelled
out too, so that agreeing on a wrong answer fails as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.sessionwise.parity.scenarios import SCENARIOS, run_scenario
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[3]
INNER_TESTS = Path(__file__).with_name("test_isolated_run.py")
READY_TIMEOUT = 60.0  # seconds for uvicorn to start on a busy machine


def expected(backend: str) -> dict[str, dict[str, Any]]:
    level = "serializable"
    return {
        "create": {"statuses": [201], "rows": ["one"], "answers": []},
        "duplicate": {"statuses": [201, 409], "rows": ["same"], "answers": []},
        # Refused by the database (PostgreSQL 25006, SQLite SQLITE_READONLY): an app bug.
        "read_session_refuses_a_write": {"statuses": [500], "rows": [], "answers": []},
        "nested_write_session": {"statuses": [500], "rows": [], "answers": []},
        "two_concurrent_tasks": {
            "statuses": [201],
            "rows": ["pair a", "pair a+", "pair b", "pair b+"],
            "answers": [["a", "b"]],
        },
        "background_job": {"statuses": [202], "rows": ["from a job"], "answers": []},
        "serializable_transaction": {"statuses": [201], "rows": ["strict"], "answers": [level]},
        "rolled_back_request": {"statuses": [400], "rows": [], "answers": []},
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def parity_url(backend: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    return url


@contextmanager
def served(url: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PARITY_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "uvicorn", "tests.sessionwise.parity.app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def wait_ready(base_url: str, log: Path) -> None:
    with anyio.fail_after(READY_TIMEOUT):
        async with httpx.AsyncClient(base_url=base_url) as client:
            while True:
                try:
                    if (await client.get("/notes", params={"prefix": "-"})).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.1)


async def served_outcomes(url: str, log: Path) -> dict[str, dict[str, Any]]:
    with served(url, log) as base_url:
        await wait_ready(base_url, log)
        # A connection per request: uvicorn closes one after an unhandled exception's 500,
        # and a keep-alive client would meet that as a ReadError on its next request.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=fresh) as client:
            return {name: asdict(await run_scenario(name, client, "served")) for name in SCENARIOS}


async def plugin_outcomes(url: str, workdir: Path) -> dict[str, dict[str, Any]]:
    outcomes_file = workdir / "plugin-outcomes.jsonl"
    env = {**os.environ, "PARITY_DATABASE_URL": url, "PARITY_OUTCOMES": str(outcomes_file)}
    command = [sys.executable, "-m", "pytest", str(INNER_TESTS), "-q", "-p", "no:randomly"]
    result = await anyio.run_process(command, cwd=REPO, env=env, check=False)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output
    assert f"{len(SCENARIOS)} passed" in output, output
    outcomes: dict[str, dict[str, Any]] = {}
    for line in outcomes_file.read_text().splitlines():
        outcomes.update(json.loads(line))
    return outcomes


async def test_plugin_and_served_app_agree(backend: str, parity_url: str, tmp_path: Path) -> None:
    served_run = await served_outcomes(parity_url, tmp_path / "uvicorn.log")
    plugin_run = await plugin_outcomes(parity_url, tmp_path)

    for name in SCENARIOS:
        assert plugin_run[name] == served_run[name], name
    assert served_run == expected(backend)
