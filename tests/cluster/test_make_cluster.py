"""``make cluster`` / ``make cluster-down`` (issue 12, point 7), as the Makefile runs them.

``python -m cluster up`` starts etcd, two Patroni nodes, HAProxy, PgBouncer and two taskyard
processes; a create through HAProxy's HTTP listener must answer 201 and be readable through
it, and the task must be on the primary. ``down`` must leave no process and no directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.support.direct_sql import pg_fetch

pytestmark = pytest.mark.patroni

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cluster(command: str, directory: Path) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKYARD_")}
    result = subprocess.run(
        [sys.executable, "-m", "cluster", command, "--dir", str(directory)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"cluster {command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(300)
def test_make_cluster_serves_through_haproxy_and_cluster_down_stops_it() -> None:
    directory = Path(tempfile.mkdtemp(prefix="tyf-cl-"))
    try:
        printed = _cluster("up", directory)
        state = json.loads((directory / "state.json").read_text())
        pids: dict[str, int] = state["pids"]
        api, api_key = state["urls"]["api"], state["api_key"]
        assert api in printed
        assert "make cluster-down" in printed
        started = {"etcd", "pg0", "pg1", "haproxy", "pgbouncer", "taskyard0", "taskyard1"}
        assert set(pids) == started

        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
            created = client.post("/api/v1/projects", json={"name": "through haproxy"})
            assert created.status_code == 201, created.text
            listed = client.get("/api/v1/projects")
            assert listed.status_code == 200, listed.text
            assert [p["name"] for p in listed.json()["items"]] == ["through haproxy"]
        primary = state["urls"]["database_primary_via_haproxy"]
        rows = asyncio.run(pg_fetch(primary, "SELECT name FROM projects"))
        assert [row["name"] for row in rows] == ["through haproxy"]
    finally:
        _cluster("down", directory)
    assert not directory.exists()
    assert not [name for name, pid in pids.items() if _alive(pid)]
