"""A PgBouncer in transaction mode in front of the benchmark's PostgreSQL server.

Small on purpose: one database entry, trust authentication (as the server itself), a free
loopback port, files in a temporary directory. PgBouncer refuses to run as root, so under
root it is started with ``-u postgres`` (and its directory handed to that user).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.servers import free_port

PGBOUNCER = "/usr/sbin/pgbouncer"
START_TIMEOUT_S = 15.0


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (PGBOUNCER if Path(PGBOUNCER).exists() else None)
    if found is None:
        raise RuntimeError("pgbouncer is not installed: run `make system-deps`")
    return found


@contextlib.contextmanager
def pgbouncer(server_url: str, *, pool_size: int = 20) -> Iterator[str]:
    """Run PgBouncer (transaction pooling) for the database of *server_url*.

    Yields the same URL pointed at PgBouncer. *pool_size* server connections are shared by
    every client connection (``default_pool_size``).
    """
    server = make_url(server_url)
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    config = root / "pgbouncer.ini"
    (root / "userlist.txt").write_text(f'"{server.username}" ""\n')
    config.write_text(
        "[databases]\n"
        f"{server.database} = host={server.host} port={server.port or 5432} "
        f"dbname={server.database} user={server.username}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {root / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 1000\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
        f"pidfile = {root / 'pgbouncer.pid'}\n"
    )
    command = [pgbouncer_binary(), str(config)]
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, *root.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        command = [pgbouncer_binary(), "-u", "postgres", str(config)]
    stderr_path = root / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_listening(port, process, stderr_path)
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = stderr.read_text(errors="replace")
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {output}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not listen on port {port} within {START_TIMEOUT_S}s")
