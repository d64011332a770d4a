"""``taskyard serve`` as a user runs it: a real process, real sockets, a fresh database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

READY_WITHIN = 30.0  # seconds: the promise for a fresh start


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _taskyard(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskyard", *args]


@contextmanager
def served(cwd: Path, *args: str) -> Iterator[tuple[str, float]]:
    """Start ``taskyard serve``; yield its base URL and seconds until /health/ready said 200."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    log = (cwd / "serve.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        _taskyard("serve", "--port", str(port), "--no-access-log", *args),
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready_after = None
        while time.monotonic() - started < READY_WITHIN and process.poll() is None:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    ready_after = time.monotonic() - started
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready_after is not None, (cwd / "serve.log").read_text()
        yield base, ready_after
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _cli(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    result = subprocess.run(
        _taskyard(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_serve_on_a_fresh_sqlite_file_is_ready_within_30_seconds(tmp_path: Path) -> None:
    # The default database, ./taskyard.db, in an empty directory: what `make serve` does.
    with served(tmp_path) as (base, ready_after):
        assert ready_after < READY_WITHIN
        body = httpx.get(f"{base}/health/ready").json()
        assert body["status"] == "ok"
        assert body["pool"]["checked_out"] == 0
        assert (tmp_path / "taskyard.db").exists()
        key = _cli(
            tmp_path, "users", "create", "--email", "a@example.com", "--name", "A"
        ).splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(f"{base}/api/v1/projects", json={"name": "p"}, headers=headers)
        assert created.status_code == 201
        assert httpx.get(f"{base}/docs").status_code == 200
    log = (tmp_path / "serve.log").read_text()
    assert key not in log
    assert "Authorization" not in log


def test_serve_with_two_workers_shares_one_cursor_key(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'two.db'}"
    key = _cli(tmp_path, "seed", "--tasks", "30", "--database-url", url).splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    with served(tmp_path, "--workers", "2", "--database-url", url) as (base, _):
        # Each request on a new connection, which either worker may accept: a cursor signed
        # by one must be valid on the other.
        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = httpx.get(f"{base}/api/v1/tasks", params=params, headers=headers)
            assert page.status_code == 200, page.text
            seen += [task["id"] for task in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 30
    assert (tmp_path / "serve.log").read_text().count("Started server process") == 2
