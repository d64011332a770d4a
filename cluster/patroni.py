"""A Patroni cluster on loopback ports: one etcd member, a primary and a synchronous standby.

Used by the failover test (tests/faults/test_patroni_failover.py) and by ``make cluster``.
Everything lives under one directory: etcd's data, each node's data directory, unix socket,
Patroni configuration and log. PostgreSQL refuses to run as root, so under root the
directory belongs to the ``postgres`` OS user and Patroni runs as that user (``runuser``),
as ``tests/support/postgres_cluster.py`` does for plain clusters.

The timings are short on purpose (ttl 10 s, loop_wait 1 s), and ``primary_start_timeout:
0`` makes Patroni fail over as soon as the primary's postmaster dies instead of restarting it
in place: a crash then costs about loop_wait plus a promotion. ``synchronous_mode: true``
keeps every commit a client saw on the standby too, so the promotion loses none of them;
``use_pg_rewind`` lets the old primary rejoin as a standby of the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EtcdServer", "PatroniCluster", "PatroniNode", "free_port", "running_patroni_cluster"]

PATRONI = os.environ.get("PATRONI_BINARY", "/usr/bin/patroni")
ETCD = os.environ.get("ETCD_BINARY", "/usr/bin/etcd")
PG_BIN_DIR = os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin")
OS_USER = "postgres"  # PostgreSQL (and so Patroni) refuses to run as root
START_TIMEOUT = 60.0  # seconds for etcd, the bootstrap and the standby's base backup


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def as_os_user() -> list[str]:
    """The command prefix that runs a server program as ``postgres`` when we are root."""
    return ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []


def give_to_os_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(OS_USER)
    for item in (path, *path.rglob("*")):
        os.chown(item, account.pw_uid, account.pw_gid)


def _clean_env() -> dict[str, str]:
    # Patroni is a Debian program on the system Python: none of this venv's variables.
    keep = ("LANG", "LC_ALL", "TZ")
    env = {key: value for key, value in os.environ.items() if key in keep}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    env.setdefault("LANG", "C.UTF-8")
    return env


def _http_json(url: str, timeout: float = 1.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body or b"null")
        except ValueError:
            return error.code, None
    except (OSError, ValueError):
        return 0, None


def _wait(what: str, check: Any, timeout: float, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    detail = f"\n{log()}" if log is not None else ""
    raise RuntimeError(f"{what}: not after {timeout:.0f}s{detail}")


def _stop_process(process: subprocess.Popen[bytes] | None, pid: int | None = None) -> None:
    """SIGKILL a process group we started (its own session), then reap it."""
    target = process.pid if process is not None else pid
    if target is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(target, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


@dataclass
class EtcdServer:
    """One etcd member: Patroni's distributed configuration store."""

    directory: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        command = [
            ETCD,
            "--name=etcd0",
            f"--data-dir={self.directory / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=etcd0={peer}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        with (self.directory / "etcd.log").open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait("etcd healthy", self._healthy, START_TIMEOUT, self.log)

    def _healthy(self) -> bool:
        status, body = _http_json(f"{self.url}/health")
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"

    def log(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        _stop_process(self.process)


@dataclass
class PatroniNode:
    """One PostgreSQL server and the Patroni that runs it."""

    name: str
    directory: Path
    pg_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.pg_port}"

    def url(self, database: str = "postgres") -> str:
        """A single-host SQLAlchemy URL (asyncpg) of this node alone."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{database}"

    def config(self, scope: str, etcd: EtcdServer) -> dict[str, Any]:
        trust = [
            "local all all trust",
            "local replication all trust",
            "host all all 127.0.0.1/32 trust",
            "host replication all 127.0.0.1/32 trust",
        ]
        return {
            "scope": scope,
            "namespace": "/taskyard/",
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": self.api_url[7:], "connect_address": self.api_url[7:]},
            "etcd3": {"hosts": [f"127.0.0.1:{etcd.client_port}"]},
            "bootstrap": {
                "dcs": {
                    # Patroni's rule: loop_wait + 2 * retry_timeout <= ttl.
                    "ttl": 10,
                    "loop_wait": 1,
                    "retry_timeout": 4,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "synchronous_mode": True,
                    "primary_start_timeout": 0,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            # The tests crash servers, never the machine: page cache suffices.
                            "fsync": "off",
                            "synchronous_commit": "on",
                            "max_connections": 100,
                            "shared_buffers": "32MB",
                            "wal_keep_size": "64MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            },
            "postgresql": {
                "listen": self.address,
                "connect_address": self.address,
                "data_dir": str(self.data_dir),
                "bin_dir": PG_BIN_DIR,
                "pgpass": str(self.directory / "pgpass"),
                "pg_hba": trust,
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "postgres", "password": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(self.directory)},
            },
        }

    def start(self, scope: str, etcd: EtcdServer) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config_file = self.directory / "patroni.yml"
        # JSON is YAML: no YAML writer needed.
        config_file.write_text(json.dumps(self.config(scope, etcd), indent=2))
        give_to_os_user(self.directory)
        with (self.directory / "patroni.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*as_os_user(), PATRONI, str(config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                start_new_session=True,
            )

    def status(self) -> dict[str, Any]:
        """Patroni's view of this node (``GET /patroni``); empty if it does not answer."""
        code, body = _http_json(f"{self.api_url}/patroni")
        return body if code in (200, 503) and isinstance(body, dict) else {}

    def is_primary(self) -> bool:
        status = self.status()
        return status.get("role") in ("master", "primary") and status.get("state") == "running"

    def is_streaming_standby(self) -> bool:
        status = self.status()
        return (
            status.get("role") == "replica"
            and status.get("state") == "running"
            and status.get("replication_state", "streaming") == "streaming"
        )

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_postmaster(self) -> int:
        """SIGKILL this node's postmaster (a crash of the server, not of Patroni)."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError(f"{self.name}: no postmaster.pid")
        os.kill(pid, signal.SIGKILL)
        return pid

    def log(self) -> str:
        path = self.directory / "patroni.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """Kill Patroni, then crash-stop its PostgreSQL if it outlived it."""
        _stop_process(self.process)
        if (self.data_dir / "postmaster.pid").exists():
            pg_ctl = [f"{PG_BIN_DIR}/pg_ctl", "stop", "-m", "immediate", "-w"]
            subprocess.run(
                [*as_os_user(), *pg_ctl, "-D", str(self.data_dir)],
                capture_output=True,
                check=False,
                timeout=30,
            )


@dataclass
class PatroniCluster:
    """etcd plus two Patroni nodes under *directory*."""

    directory: Path
    scope: str = "taskyard"
    nodes: list[PatroniNode] = field(default_factory=list)
    etcd: EtcdServer | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [
                PatroniNode(f"pg{index}", self.directory / f"pg{index}") for index in (0, 1)
            ]
        if self.etcd is None:
            self.etcd = EtcdServer(self.directory / "etcd")

    def multi_host_url(self, database: str = "postgres", **query: str) -> str:
        """The SQLAlchemy asyncpg URL of all nodes: connects to whichever accepts writes."""
        hosts = "&".join(f"host={node.address}" for node in self.nodes)
        attrs = {"target_session_attrs": "read-write", **query}
        extra = "".join(f"&{key}={value}" for key, value in attrs.items())
        return f"postgresql+asyncpg://postgres@/{database}?{hosts}{extra}"

    def start(self) -> None:
        """etcd, then the first node (bootstrap), then the second (base backup, sync standby)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        assert self.etcd is not None
        self.etcd.start()
        first, second = self.nodes
        first.start(self.scope, self.etcd)
        _wait(f"{first.name} primary", first.is_primary, START_TIMEOUT, first.log)
        second.start(self.scope, self.etcd)
        _wait("a synchronous standby", self.has_sync_standby, START_TIMEOUT, self.logs)

    def primary(self) -> PatroniNode | None:
        return next((node for node in self.nodes if node.is_primary()), None)

    def members(self) -> list[dict[str, Any]]:
        """``GET /cluster`` of any node that answers: each member's role and state."""
        for node in self.nodes:
            code, body = _http_json(f"{node.api_url}/cluster")
            if code == 200 and isinstance(body, dict):
                members: list[dict[str, Any]] = body.get("members", [])
                return members
        return []

    def has_sync_standby(self) -> bool:
        members = self.members()
        leader = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        sync = [
            m
            for m in members
            if m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming")
        ]
        return len(leader) == 1 and len(sync) == 1

    def logs(self) -> str:
        return "\n".join(f"--- {node.name} ---\n{node.log()}" for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.etcd is not None:
            self.etcd.stop()


@contextlib.contextmanager
def running_patroni_cluster(directory: Path) -> Iterator[PatroniCluster]:
    """A started cluster in *directory* (short path: unix sockets), killed and removed after."""
    cluster = PatroniCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
