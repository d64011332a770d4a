"""PostgreSQL LISTEN/NOTIFY: one listening connection outside the pool, and `notify`.

`PostgresListener` holds **one** dedicated asyncpg connection per process (never a pooled
one: a pooled connection that LISTENs would have to stay checked out for the life of the
process, and a pool reset would drop its ``LISTEN``). It runs ``LISTEN <channel>`` and hands
each notification's payload to a callback. When the connection drops (a server restart, a
failover, ``pg_terminate_backend``) it reconnects with exponential backoff, capped, with
jitter; a notification sent while it was down is lost, so the callback for the connection's
state tells its owner to look for itself (``on_state(False)`` on loss, ``on_state(True)``
once listening again).

`notify` sends a notification *inside the caller's transaction*: PostgreSQL delivers it when
that transaction commits, and never if it rolls back (PostgreSQL docs, NOTIFY: "if a NOTIFY
is executed inside a transaction, the notify events are not delivered until and unless the
transaction is committed"). Identical payloads on one channel within one transaction are
delivered once.

Not through PgBouncer in transaction mode: there a ``LISTEN`` binds to whichever server
connection ran it. Give the listener a direct URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["PostgresListener", "notify"]

logger = logging.getLogger("sessionwise")

_NOTIFY = text("SELECT pg_notify(:channel, :payload)").bindparams(
    bindparam("channel"), bindparam("payload")
)
# How often an idle listening connection is pinged: a socket that died without a FIN (a
# network partition, a killed VM) is noticed by the next statement, not by the LISTEN.
_PING_INTERVAL = 15.0
_PING_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 5.0


async def notify(connection: AsyncConnection, channel: str, payload: str) -> None:
    """``pg_notify(channel, payload)`` in *connection*'s transaction: sent on commit only."""
    await connection.execute(_NOTIFY, {"channel": channel, "payload": payload})


def _asyncpg_dsn(url: str | URL) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresListener:
    """``LISTEN channel`` on one connection of its own, reconnecting when it drops.

    Args:
        url: The database, as a SQLAlchemy URL (``postgresql+asyncpg://...``) or a DSN.
        channel: The channel to listen on (an identifier; it is quoted).
        on_notification: Called with each payload, on the event loop; must not block.
        on_state: Called with True once ``LISTEN`` runs, False when the connection is lost.
        application_name: Shown in ``pg_stat_activity``.
        backoff: First and largest wait in seconds between reconnection attempts.

    Use it as an async context manager (or `start` / `close`). `start` does not wait for
    the first connection: an unreachable database at startup is a reconnect loop, not an
    error, and `connected` says whether notifications arrive right now.
    """

    def __init__(
        self,
        url: str | URL,
        channel: str,
        on_notification: Callable[[str], None],
        *,
        on_state: Callable[[bool], None] | None = None,
        application_name: str = "sessionwise-listener",
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._dsn = _asyncpg_dsn(url)
        self.channel = channel
        self._on_notification = on_notification
        self._on_state = on_state
        self._application_name = application_name[:63]
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        self.connected = False

    def __repr__(self) -> str:
        state = "listening" if self.connected else "not listening"
        return f"<PostgresListener {self.channel!r} {state}>"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"LISTEN {self.channel}")

    async def close(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> PostgresListener:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_until_lost()
                failures = 0  # it was up: the next loss starts the backoff afresh
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure means "reconnect"; logged without the DSN
                failures += 1
                if failures == 1:
                    logger.warning(
                        "LISTEN %s: connection failed (%s); reconnecting",
                        self.channel,
                        type(error).__name__,
                    )
            finally:
                await self._lost()
            first, largest = self._backoff
            delay = min(largest, first * 2 ** min(failures, 16)) * (0.5 + random.random() / 2)
            await asyncio.sleep(delay)

    async def _listen_until_lost(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # late: the postgres extra is optional

        lost = asyncio.Event()
        self._connection = connection = await asyncpg.connect(
            self._dsn,
            timeout=_CONNECT_TIMEOUT,
            server_settings={"application_name": self._application_name},
        )
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(self.channel, self._deliver)
        self.connected = True
        logger.info("LISTEN %s: listening", self.channel)
        self._report(True)
        while not lost.is_set():
            # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancellation that
            # arrives as the wait ends (cpython gh-86296), and close() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PING_INTERVAL):
                    await lost.wait()
                break
            await connection.fetchval("SELECT 1", timeout=_PING_TIMEOUT)
        logger.warning("LISTEN %s: connection lost; reconnecting", self.channel)

    def _deliver(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._on_notification(payload)
        except Exception:  # a broken callback must not end the listening
            logger.exception("LISTEN %s: notification callback failed", self.channel)

    def _report(self, connected: bool) -> None:
        if self._on_state is not None:
            try:
                self._on_state(connected)
            except Exception:
                logger.exception("LISTEN %s: state callback failed", self.channel)

    async def _lost(self) -> None:
        connection, self._connection = self._connection, None
        was_connected, self.connected = self.connected, False
        if was_connected:
            self._report(False)
        if connection is not None:
            # Shielded: close() runs on cancellation (shutdown) too, and must finish.
            with contextlib.suppress(Exception):
                await asyncio.shield(_close(connection))


async def _close(connection: Any) -> None:
    try:
        await connection.close(timeout=_CONNECT_TIMEOUT)
    except Exception:
        connection.terminate()
