"""What a test's backends are doing, read from ``pg_stat_activity`` over a separate connection.

Tests give their `Database` a unique ``application_name`` (the ``application_name`` fixture)
and look only at the backends that carry it.
"""

from __future__ import annotations

import os
from collections import Counter

import anyio
import asyncpg

from tests.support.waiting import wait_until

# States of a backend that is doing something or holding a transaction open.
BUSY_STATES = frozenset({"active", "idle in transaction", "idle in transaction (aborted)"})


async def backend_states(admin: asyncpg.Connection, application_name: str) -> Counter[str]:
    """How many backends of *application_name* are in each state right now."""
    rows = await admin.fetch(
        "SELECT state FROM pg_stat_activity WHERE application_name = $1", application_name
    )
    return Counter(str(row["state"]) for row in rows)


async def settled_states(
    admin: asyncpg.Connection, application_name: str, *, within: float = 5.0
) -> Counter[str]:
    """The states once no backend of *application_name* is busy, or the last ones seen.

    A closed client connection reaches the server asynchronously, so the check polls briefly
    instead of reading once; the caller asserts on what it returns.
    """
    states = await backend_states(admin, application_name)
    with anyio.move_on_after(within):
        while BUSY_STATES & {state for state, count in states.items() if count}:
            await anyio.sleep(0.05)
            states = await backend_states(admin, application_name)
    return states


async def terminate_backends(admin: asyncpg.Connection, application_name: str) -> int:
    """Terminate every backend of *application_name*, as a server restart would; how many.

    Returns once the backend processes have exited, so that their sockets are closed: a
    backend leaves ``pg_stat_activity`` a moment before its process (and connection) ends.
    """
    rows = await admin.fetch(
        "SELECT pid, pg_terminate_backend(pid) AS done FROM pg_stat_activity "
        "WHERE application_name = $1",
        application_name,
    )
    pids = [row["pid"] for row in rows]
    await wait_until(lambda: not any(_process_exists(pid) for pid in pids), within=10)
    return sum(1 for row in rows if row["done"])


def _process_exists(pid: int) -> bool:
    # The server runs on this machine (the suite talks to 127.0.0.1 as a superuser).
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
