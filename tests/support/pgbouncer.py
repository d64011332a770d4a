"""A real PgBouncer in transaction mode, started for a test (or a benchmark) and stopped after.

    with running_pgbouncer("postgresql+asyncpg://postgres@127.0.0.1:5432/app") as bouncer:
        db = Database(bouncer.url, pgbouncer=True)

Everything lives in a temporary directory: the configuration, the auth file (trust
authentication, as the server itself uses; PgBouncer still wants the user listed there), the
log. PgBouncer listens on 127.0.0.1 and a free port only, and forwards every database name to
the server of the URL (``* = host=... port=...``). PgBouncer refuses to run as root, so under
root the directory is handed to the ``postgres`` OS user and PgBouncer runs with
``-u postgres``. The context manager waits until PgBouncer accepts connections, and at the end
terminates it (SIGTERM, then SIGKILL after a grace period) and removes the directory.
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
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.ports import free_port

PGBOUNCER_BINARY = os.environ.get("TEST_PGBOUNCER", "/usr/sbin/pgbouncer")
_RUN_AS = "postgres"  # the OS user PgBouncer switches to when started as root
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: where it listens, and the URL that reaches the server through it."""

    port: int
    url: str
    directory: Path

    @property
    def log(self) -> str:
        """PgBouncer's log so far, for failure messages."""
        log_file = self.directory / "pgbouncer.log"
        return log_file.read_text(errors="replace") if log_file.exists() else ""


def _config(server_host: str, server_port: int, user: str, port: int, root: Path, pool: int) -> str:
    return (
        "[databases]\n"
        f"* = host={server_host} port={server_port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {root / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool}\n"
        "max_client_conn = 1000\n"
        f"admin_users = {user}\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
        f"pidfile = {root / 'pgbouncer.pid'}\n"
    )


@contextlib.contextmanager
def running_pgbouncer(server_url: str, *, pool_size: int = 5) -> Iterator[PgBouncer]:
    """Run PgBouncer in transaction mode in front of the server of *server_url*.

    Args:
        server_url: A SQLAlchemy URL of the PostgreSQL server (any database on it).
        pool_size: Server connections per database and user (``default_pool_size``), shared
            by all client connections.

    Yields:
        The running `PgBouncer`; its ``url`` is *server_url* pointed at PgBouncer.
    """
    if not Path(PGBOUNCER_BINARY).exists():
        raise RuntimeError(f"no pgbouncer at {PGBOUNCER_BINARY}: run `make system-deps`")
    server = make_url(server_url)
    user = server.username or "postgres"
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="sw-pgbouncer-"))
    config = root / "pgbouncer.ini"
    (root / "userlist.txt").write_text(f'"{user}" ""\n')
    config.write_text(
        _config(server.host or "127.0.0.1", server.port or 5432, user, port, root, pool_size)
    )
    command = [PGBOUNCER_BINARY, str(config)]
    if os.geteuid() == 0:
        owner = pwd.getpwnam(_RUN_AS)
        for path in (root, *root.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        command = [PGBOUNCER_BINARY, "-u", _RUN_AS, str(config)]
    bouncer = PgBouncer(
        port=port,
        url=server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
        directory=root,
    )
    with (root / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_until_listening(bouncer, process)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_listening(bouncer: PgBouncer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = (bouncer.directory / "stderr.log").read_text(errors="replace")
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {stderr}{bouncer.log}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", bouncer.port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer not listening on {bouncer.port} after {_START_TIMEOUT}s")
