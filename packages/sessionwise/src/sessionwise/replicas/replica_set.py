"""The replicas of one `Database`: their pools, the lag monitor, and the route table.

`Database` builds one when ``replica_urls`` is set and delegates to it; without replicas none
exists and no read takes a step more than before.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sessionwise.config import DatabaseConfig
from sessionwise.pool_turns import PoolTurns
from sessionwise.postgres import (
    autocommit_reads,
    install_postgres_profile,
    postgres_engine_options,
    read_engine_options,
)
from sessionwise.replicas.monitor import LagMonitor, Replica, ReplicaStatus
from sessionwise.replicas.positions import PRIMARY_POSITION_SQL, WalPosition
from sessionwise.replicas.routing import ReadRoute, RouteTable

__all__ = ["ReplicaSet"]

# A replica that does not answer must cost a read little: connecting to it (and each
# monitor check) gives up after this long, not after asyncpg's default of 60 s.
_CONNECT_TIMEOUT = 2.0
_PRIMARY_POSITION = text(f"SELECT {PRIMARY_POSITION_SQL}")


def _replica_engine(url: str, config: DatabaseConfig) -> AsyncEngine:
    # The same options as the primary's read sessions: with read_sessions="autocommit" a
    # read-only autocommit pool, else READ ONLY transactions.
    if autocommit_reads(config):
        options = read_engine_options(config)
    else:
        options = postgres_engine_options(config)
        options["pool_size"] = config.read_pool_size or config.pool_size
    options["connect_args"]["timeout"] = min(_CONNECT_TIMEOUT, config.pool_timeout)
    engine = create_async_engine(url, echo=config.echo, **options)
    install_postgres_profile(engine, config)
    if autocommit_reads(config):
        return engine
    return engine.execution_options(postgresql_readonly=True)


def _probe_engine(url: str, config: DatabaseConfig, *, primary: bool = False) -> AsyncEngine:
    # The primary's probe connects as the primary's pools do: with a multi-host URL, only to
    # the host that is the primary now (sessionwise.postgres).
    options: dict[str, Any] = postgres_engine_options(config, primary=primary)
    timeout = min(_CONNECT_TIMEOUT, config.pool_timeout)
    options.update(pool_size=1, max_overflow=0, pool_timeout=timeout)
    options["connect_args"]["timeout"] = timeout
    settings = options["connect_args"]["server_settings"]
    settings["application_name"] = f"{config.application_name}-replica-monitor"
    # One statement per check, no BEGIN/ROLLBACK around it.
    return create_async_engine(url, isolation_level="AUTOCOMMIT", **options)


class ReplicaSet:
    """Pools and monitor of the configured replicas; started and closed with the Database."""

    def __init__(self, config: DatabaseConfig, primary_url: str) -> None:
        self._config = config
        self._primary_probe = _probe_engine(primary_url, config, primary=True)
        self.replicas = [
            Replica(url, _replica_engine(url, config), _probe_engine(url, config))
            for url in config.replica_urls
        ]
        self.monitor = LagMonitor(
            self._primary_probe,
            self.replicas,
            max_lag=config.replica_max_lag,
            interval=config.replica_check_interval,
            timeout=min(_CONNECT_TIMEOUT, config.pool_timeout),
        )
        self._task: asyncio.Task[None] | None = None
        self._table: RouteTable | None = None

    def start(self, primary_read_engine: AsyncEngine) -> dict[int, PoolTurns]:
        """Start the monitor; returns the pool turns of each replica engine, by ``id()``."""
        read_size = self._config.read_pool_size or self._config.pool_size
        turns = {
            id(replica.engine): PoolTurns(
                read_size + self._config.max_overflow, self._config.pool_timeout
            )
            for replica in self.replicas
        }
        self._table = RouteTable(self.replicas, turns, primary_read_engine)
        self._task = asyncio.create_task(self.monitor.run(), name="sessionwise-replica-monitor")
        return turns

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for replica in self.replicas:
            await replica.engine.dispose()
            await replica.probe.dispose()
        await self._primary_probe.dispose()

    def route(self, fresh_as: WalPosition | None) -> ReadRoute:
        assert self._table is not None, "ReplicaSet.start() first"
        return ReadRoute(self._table, fresh_as)

    def status(self) -> list[ReplicaStatus]:
        return [replica.status() for replica in self.replicas]

    async def primary_position(self, engine: AsyncEngine) -> WalPosition:
        async with engine.connect() as connection:
            return WalPosition(int((await connection.execute(_PRIMARY_POSITION)).scalar_one()))
