"""HAProxy and PgBouncer for ``make cluster``: their configuration, started as daemons of ours.

HAProxy does two jobs, as in Patroni's own examples: a TCP listener that leads to whichever
node is the primary (the health check asks each node's Patroni REST API, ``OPTIONS
/primary``, and a node marked down has its sessions cut, so nothing stays connected to a
demoted primary), another to the standbys (``/replica``), and an HTTP listener that spreads
requests over the taskyard processes. PgBouncer (transaction mode) sits between taskyard and
HAProxy's primary listener, so that many taskyard workers share few server connections.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cluster.patroni import OS_USER, PatroniNode

__all__ = ["HAPROXY", "PGBOUNCER", "haproxy_config", "pgbouncer_config", "start_daemon"]

HAPROXY = os.environ.get("HAPROXY_BINARY", "/usr/sbin/haproxy")
PGBOUNCER = os.environ.get("PGBOUNCER_BINARY", "/usr/sbin/pgbouncer")


def _postgres_listener(name: str, port: int, check: str, nodes: Sequence[PatroniNode]) -> str:
    servers = "".join(
        f"    server {node.name} {node.address} check port {node.api_port}\n" for node in nodes
    )
    return (
        f"listen {name}\n"
        f"    bind 127.0.0.1:{port}\n"
        "    balance roundrobin\n"
        f"    option httpchk OPTIONS {check}\n"
        "    http-check expect status 200\n"
        # A check a second, down after two failures: a failover is seen within ~2 s.
        "    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions\n"
        f"{servers}"
    )


def haproxy_config(
    *,
    primary_port: int,
    replicas_port: int,
    http_port: int,
    nodes: Sequence[PatroniNode],
    app_ports: Sequence[int],
) -> str:
    apps = "".join(
        f"    server taskyard{index} 127.0.0.1:{port} check\n"
        for index, port in enumerate(app_ports)
    )
    return (
        "global\n"
        "    maxconn 2000\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 2s\n"
        "    timeout check 2s\n"
        # Database sessions sit idle in pools for long; HTTP requests are short.
        "    timeout client 30m\n"
        "    timeout server 30m\n"
        + _postgres_listener("postgres_primary", primary_port, "/primary", nodes)
        + _postgres_listener("postgres_replicas", replicas_port, "/replica", nodes)
        + "listen taskyard\n"
        f"    bind 127.0.0.1:{http_port}\n"
        "    mode http\n"
        "    balance roundrobin\n"
        "    option httpchk GET /health/ready\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    default-server inter 2s fall 2 rise 1\n"
        f"{apps}"
    )


def pgbouncer_config(directory: Path, *, port: int, server_port: int, pool_size: int) -> str:
    return (
        "[databases]\n"
        f"* = host=127.0.0.1 port={server_port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 1000\n"
        # After a failover the old server connections are gone, and new ones reach the new
        # primary through HAProxy once its check passes (a second or two). PgBouncer waits
        # server_login_retry (15 s by default) after a failed server login before it tries
        # again, and holds a waiting client up to query_wait_timeout (120 s): both short, so
        # that a request waits about as long as the failover, and at worst fails fast (503).
        "server_connect_timeout = 3\n"
        "server_login_retry = 1\n"
        "query_wait_timeout = 10\n"
        "admin_users = postgres\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )


def write_pgbouncer_files(directory: Path, config: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    path = directory / "pgbouncer.ini"
    path.write_text(config)
    if os.geteuid() == 0:  # PgBouncer refuses to run as root; it switches to OS_USER (-u)
        account = pwd.getpwnam(OS_USER)
        for item in (directory, *directory.iterdir()):
            os.chown(item, account.pw_uid, account.pw_gid)
    return path


def pgbouncer_command(config: Path) -> list[str]:
    user = ["-u", OS_USER] if os.geteuid() == 0 else []
    return [PGBOUNCER, *user, str(config)]


def start_daemon(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start *command* in a session of its own, output to *log*; it outlives this process."""
    with log.open("ab") as output:
        return subprocess.Popen(
            list(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
