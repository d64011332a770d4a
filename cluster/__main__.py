"""``python -m cluster up|down|status``: the multi-host topology, on one machine's loopback.

``make cluster`` runs ``up``, ``make cluster-down`` runs ``down``. What ``up`` starts, each a
process of its own, with every file under ``--dir`` (default ``./.cluster``)::

    client ──HTTP──▶ HAProxy :http ──▶ taskyard #0, taskyard #1
                                           │ (TASKYARD_DATABASE__PGBOUNCER=true)
                                           ▼
                                       PgBouncer (transaction mode, 10 server connections)
                                           │
                                           ▼
                     HAProxy :primary (checks Patroni's /primary) ──▶ pg0 | pg1
                     HAProxy :replicas (checks /replica)          ──▶ the standby
                                           ▲
                     Patroni pg0, Patroni pg1 ◀──▶ etcd

The ports are free loopback ports picked at start; ``up`` prints them, with an API key of a
demo user, and writes them to ``<dir>/cluster.env``. ``down`` stops every process it started
(by the process groups recorded in ``<dir>/state.json``) and removes the directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from cluster.patroni import PG_BIN_DIR, PatroniCluster, as_os_user, free_port
from cluster.proxies import (
    HAPROXY,
    haproxy_config,
    pgbouncer_command,
    pgbouncer_config,
    start_daemon,
    write_pgbouncer_files,
)

DATABASE = "taskyard"
SERVER_CONNECTIONS = 10
APPS = 2
READY_TIMEOUT = 120.0  # seconds for both taskyard processes on a busy machine
DEMO_EMAIL = "demo@example.test"


def _taskyard() -> str:
    script = Path(sys.executable).parent / "taskyard"
    return str(script) if script.exists() else "taskyard"


def _run_taskyard(*args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKYARD_")}
    result = subprocess.run(
        [_taskyard(), *args], capture_output=True, text=True, env=env, check=False, timeout=180
    )
    if result.returncode != 0:
        raise SystemExit(f"taskyard {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise SystemExit(f"cluster: {what} not ready after {timeout:.0f}s (logs in the state dir)")


async def _create_database(dsn: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()


def _state_file(directory: Path) -> Path:
    return directory / "state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(directory: Path) -> dict[str, Any]:
    state_file = _state_file(directory)
    if state_file.exists():
        state: dict[str, Any] = json.loads(state_file.read_text())
        if all(_alive(pid) for pid in state["pids"].values()):
            print(f"cluster: already running (state in {directory})")
            _print_urls(state)
            return state
        down(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    pids: dict[str, int] = {}
    state = {"directory": str(directory.resolve()), "pids": pids, "data_dirs": []}

    def record() -> None:
        state_file.write_text(json.dumps(state, indent=1))

    patroni = PatroniCluster(directory / "patroni")
    try:
        patroni.start()
    finally:
        # Recorded even when the start fails, so that `down` finds what did start.
        assert patroni.etcd is not None
        for name, process in [("etcd", patroni.etcd.process)] + [
            (node.name, node.process) for node in patroni.nodes
        ]:
            if process is not None:
                pids[name] = process.pid
        state["data_dirs"] = [str(node.data_dir) for node in patroni.nodes]
        record()
    primary = patroni.primary()
    assert primary is not None
    asyncio.run(_create_database(primary.dsn()))

    ports = {name: free_port() for name in ("http", "primary", "replicas", "pgbouncer")}
    app_ports = [free_port() for _ in range(APPS)]
    state["ports"] = {**ports, "apps": app_ports}
    haproxy_file = directory / "haproxy.cfg"
    haproxy_file.write_text(
        haproxy_config(
            primary_port=ports["primary"],
            replicas_port=ports["replicas"],
            http_port=ports["http"],
            nodes=patroni.nodes,
            app_ports=app_ports,
        )
    )
    haproxy = start_daemon([HAPROXY, "-f", str(haproxy_file)], directory / "haproxy.log")
    pids["haproxy"] = haproxy.pid
    record()
    bouncer_dir = directory / "pgbouncer"
    bouncer_config = write_pgbouncer_files(
        bouncer_dir,
        pgbouncer_config(
            bouncer_dir,
            port=ports["pgbouncer"],
            server_port=ports["primary"],
            pool_size=SERVER_CONNECTIONS,
        ),
    )
    bouncer = start_daemon(pgbouncer_command(bouncer_config), directory / "pgbouncer.out")
    pids["pgbouncer"] = bouncer.pid
    record()

    direct_url = patroni.multi_host_url(DATABASE)
    bouncer_url = f"postgresql+asyncpg://postgres@127.0.0.1:{ports['pgbouncer']}/{DATABASE}"
    replicas_url = f"postgresql+asyncpg://postgres@127.0.0.1:{ports['replicas']}/{DATABASE}"
    # Migrations and the demo user on the primary directly (the multi-host URL).
    _run_taskyard("migrate", "--database-url", direct_url)
    stdout = _run_taskyard(
        "users", "create", "--email", DEMO_EMAIL, "--name", "Demo", "--database-url", direct_url
    )
    api_key = [line.strip() for line in stdout.splitlines() if line.strip()][-1]

    app_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")},
        "TASKYARD_DATABASE__PGBOUNCER": "true",
        # One cursor-signing key for both processes: a page cursor from one is good on both.
        "TASKYARD_SECRET_KEY": secrets.token_urlsafe(32),
        "PYTHONUNBUFFERED": "1",
    }
    for index, port in enumerate(app_ports):
        command = [_taskyard(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--database-url", bouncer_url, "--no-migrate", "--no-access-log"]
        app = start_daemon(command, directory / f"taskyard-{index}.log", env=app_env)
        pids[f"taskyard{index}"] = app.pid
        record()
    for port in app_ports:
        _wait_for(
            f"taskyard on :{port}",
            lambda port=port: _answers(f"http://127.0.0.1:{port}/health/ready"),
            READY_TIMEOUT,
        )
    http = f"http://127.0.0.1:{ports['http']}"
    _wait_for("HAProxy's taskyard listener", lambda: _answers(f"{http}/health/ready"), 30)

    state["urls"] = {
        "api": http,
        "docs": f"{http}/docs",
        "database_via_pgbouncer": bouncer_url,
        "database_primary_via_haproxy": (
            f"postgresql+asyncpg://postgres@127.0.0.1:{ports['primary']}/{DATABASE}"
        ),
        "database_replicas_via_haproxy": replicas_url,
        "database_multi_host": direct_url,
        "patroni_rest": [node.api_url for node in patroni.nodes],
        "etcd": patroni.etcd.url if patroni.etcd else "",
    }
    state["api_key"] = api_key
    record()
    (directory / "cluster.env").write_text(
        f"TASKYARD_URL={http}\nTASKYARD_API_KEY={api_key}\nTASKYARD_DATABASE_URL={direct_url}\n"
    )
    _print_urls(state)
    return state


def _print_urls(state: dict[str, Any]) -> None:
    urls = state.get("urls", {})
    rows = [
        (f"API (HAProxy over {APPS} taskyard processes)", urls.get("api")),
        ("API docs", urls.get("docs")),
        (f"demo API key ({DEMO_EMAIL})", state.get("api_key")),
        ("PostgreSQL via PgBouncer", urls.get("database_via_pgbouncer")),
        ("PostgreSQL primary via HAProxy", urls.get("database_primary_via_haproxy")),
        ("PostgreSQL standbys via HAProxy", urls.get("database_replicas_via_haproxy")),
        ("PostgreSQL multi-host (Patroni nodes)", urls.get("database_multi_host")),
        ("Patroni REST", " ".join(urls.get("patroni_rest", []))),
        ("etcd", urls.get("etcd")),
    ]
    lines = [
        "taskyard cluster is up:",
        *(f"  {label:<42} {value}" for label, value in rows),
        "",
        f"  try:  curl -H 'Authorization: Bearer {state.get('api_key')}' {urls.get('api')}"
        "/api/v1/projects",
        f"  logs and state in {state['directory']}",
        "  stop: make cluster-down   (python -m cluster down)",
    ]
    print("\n".join(lines), flush=True)


def down(directory: Path) -> None:
    state_file = _state_file(directory)
    if not state_file.exists():
        print(f"cluster: nothing running (no {state_file})")
        shutil.rmtree(directory, ignore_errors=True)
        return
    state = json.loads(state_file.read_text())
    # The front first, so that nothing reconnects while the back goes away.
    for name in sorted(state["pids"], key=_stop_order):
        pid = state["pids"][name]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in state["pids"].values()):
        time.sleep(0.2)
    for pid in state["pids"].values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for data_dir in state.get("data_dirs", []):
        # Patroni stops its PostgreSQL on SIGTERM; one it left behind is crash-stopped.
        if (Path(data_dir) / "postmaster.pid").exists():
            pg_ctl = [f"{PG_BIN_DIR}/pg_ctl", "stop", "-m", "immediate", "-w", "-D", data_dir]
            subprocess.run([*as_os_user(), *pg_ctl], capture_output=True, check=False, timeout=30)
    shutil.rmtree(directory, ignore_errors=True)
    print(f"cluster: stopped {len(state['pids'])} processes and removed {directory}")


def _print_log_tails(directory: Path) -> None:
    for log in sorted(directory.rglob("*.log")):
        print(f"--- {log} ---\n{log.read_text(errors='replace')[-1500:]}", file=sys.stderr)


def _stop_order(name: str) -> int:
    order = ("haproxy", "taskyard", "pgbouncer", "pg", "etcd")
    return next(index for index, prefix in enumerate(order) if name.startswith(prefix))


def status(directory: Path) -> None:
    state_file = _state_file(directory)
    if not state_file.exists():
        print("cluster: not running")
        return
    state = json.loads(state_file.read_text())
    for name, pid in state["pids"].items():
        print(f"  {name:<10} pid {pid:<8} {'running' if _alive(pid) else 'EXITED'}")
    _print_urls(state)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="state (./.cluster)")
    args = parser.parse_args(argv)
    if args.command == "up":
        try:
            up(args.dir)
        except BaseException:
            print("cluster: start failed; stopping what started", file=sys.stderr)
            _print_log_tails(args.dir)
            down(args.dir)
            raise
    elif args.command == "down":
        down(args.dir)
    else:
        status(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
