"""A throwaway PostgreSQL cluster that a test may stop, start and restart at will.

The machine's shared server (127.0.0.1:5432) must never be restarted by a test, so fault tests
make their own cluster: ``initdb`` into a temporary directory, ``pg_ctl`` on a free loopback
port, the unix socket inside the same directory, trust authentication. PostgreSQL refuses to
run as root, so when the tests run as root the cluster belongs to the ``postgres`` OS user and
every server command runs through ``runuser``.

``fsync=off``: the tests stop and crash the *server*, never the operating system, so WAL in the
page cache survives every fault they inject; skipping the disk flushes keeps a 2-core machine
fast. Durability of commits against a server crash (``stop -m immediate``) is unaffected.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port

BIN_DIR = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
_OS_USER = "postgres"
_START_TIMEOUT = 30  # seconds pg_ctl waits for the server to accept connections


class PostgresCluster:
    """One ``initdb``-made cluster in a temporary directory, on ``127.0.0.1:<port>``."""

    def __init__(self, root: Path, port: int, settings: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = port
        # Extra server settings (``-c name=value`` at every start), e.g. log_statement.
        self.settings = dict(settings or {})
        self.data_dir = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "postgres.log"

    # -- URLs -------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (asyncpg) over TCP, which is how the served app connects."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The same address as a plain libpq/asyncpg DSN."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    # -- lifecycle --------------------------------------------------------------------------

    def init(self) -> None:
        self.socket_dir.mkdir()
        _give_to_os_user(self.root)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=60",
                "-c shared_buffers=32MB",
                *(f"-c {name}={value}" for name, value in self.settings.items()),
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            f"--timeout={_START_TIMEOUT}",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "-o",
            options,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends sessions cleanly, ``immediate`` is a crash."""
        self._run("pg_ctl", "stop", "--wait", "--pgdata", str(self.data_dir), "-m", mode)

    def restart(self, down_for: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def is_running(self) -> bool:
        status = subprocess.run(
            [*_as_os_user(), str(BIN_DIR / "pg_ctl"), "status", "--pgdata", str(self.data_dir)],
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def destroy(self) -> None:
        """Crash-stop the server if it runs and delete the directory."""
        if self.data_dir.exists() and self.is_running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- administration (synchronous, for fixtures) -----------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run *sql* with ``psql`` over the unix socket; returns unaligned, tuples-only output."""
        command = [
            str(BIN_DIR / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "-v",
            "ON_ERROR_STOP=1",
            "--host",
            str(self.socket_dir),
            "--port",
            str(self.port),
            "--username",
            "postgres",
            "--dbname",
            database,
            "--command",
            sql,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AssertionError(f"psql failed ({result.returncode}): {sql}\n{result.stderr}")
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- streaming replication --------------------------------------------------------------

    def pause_replay(self) -> None:
        """On a replica: stop applying WAL (it keeps receiving it); reads see the old state."""
        self.psql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.psql("SELECT pg_wal_replay_resume()")

    def replayed_lsn(self) -> int:
        return int(self.psql("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"))

    def current_lsn(self) -> int:
        return int(self.psql("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"))

    def _run(self, program: str, *args: str) -> None:
        command = [*_as_os_user(), str(BIN_DIR / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode,
                command,
                output=result.stdout,
                stderr=f"{result.stderr}\n--- server log ---\n{self.log_tail()}",
            )


def _as_os_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", _OS_USER, "--"]


def _give_to_os_user(root: Path) -> None:
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(_OS_USER)
    for path in (root, *root.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)


def _temp_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tyf-pg-"))
    root.chmod(0o755)
    return root


@contextlib.contextmanager
def throwaway_replica(
    primary: PostgresCluster, settings: dict[str, str] | None = None
) -> Iterator[PostgresCluster]:
    """A hot-standby streaming replica of *primary*, started; deleted when the block ends.

    ``pg_basebackup -R`` copies the running primary over the replication protocol and writes
    ``standby.signal`` and ``primary_conninfo``, so the copy starts as a standby that streams
    from it (PostgreSQL docs, "Setting Up a Standby Server"). The primary needs nothing
    beyond initdb's defaults: ``wal_level=replica``, ten WAL senders and ``hot_standby=on``
    are PostgreSQL 15's defaults, and initdb's pg_hba.conf lets loopback replicate (trust).
    """
    root = _temp_root()
    replica = PostgresCluster(root, free_port(), settings)
    try:
        replica.socket_dir.mkdir()
        _give_to_os_user(root)
        replica._run(
            "pg_basebackup",
            "--pgdata",
            str(replica.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(primary.port),
            "--username",
            "postgres",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        replica.start()
        yield replica
    finally:
        replica.destroy()


@contextlib.contextmanager
def throwaway_cluster(settings: dict[str, str] | None = None) -> Iterator[PostgresCluster]:
    """A started cluster, crash-stopped and deleted when the block ends.

    The directory is made directly under the system temp dir (not pytest's ``tmp_path``,
    whose parents are private to root) so the ``postgres`` user can reach it, with a short
    name because unix socket paths are limited to about 100 bytes.
    """
    root = _temp_root()
    cluster = PostgresCluster(root, free_port(), settings)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
