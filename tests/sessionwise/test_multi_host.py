"""A multi-host primary URL, as SQLAlchemy's asyncpg dialect takes it (issue 12).

``?host=a&host=b&target_session_attrs=read-write``: asyncpg tries the hosts in order and keeps
the first that accepts writes. The first host here is a port nobody listens on (a node that
is down); the second is the test server. Both pools, the write pool and the autocommit read
pool, must land on the server and work: the read pool used to connect with
``default_transaction_read_only=on`` as a startup parameter, which asyncpg's read-write check
rejects on every host (every read failed, answered 500 by taskyard).
"""

from __future__ import annotations

from typing import Literal

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from sessionwise import Database, Failure, classify
from tests.support.ports import free_port

pytestmark = pytest.mark.postgres


def multi_host_url(url: str, *, first_port: int) -> str:
    """*url* as a two-host URL: a dead port first, then *url*'s own server."""
    parsed = make_url(url)
    hosts = [f"127.0.0.1:{first_port}", f"{parsed.host}:{parsed.port or 5432}"]
    return (
        parsed.set(host=None, port=None)
        .update_query_dict({"host": hosts, "target_session_attrs": "read-write"})
        .render_as_string(hide_password=False)
    )


@pytest.mark.parametrize("read_sessions", ["transaction", "autocommit"])
async def test_writes_and_reads_work_through_a_multi_host_url(
    postgres_url: str, read_sessions: Literal["transaction", "autocommit"]
) -> None:
    url = multi_host_url(postgres_url, first_port=free_port())
    async with Database(url, read_sessions=read_sessions) as db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE notes (body text)"))
            await session.execute(text("INSERT INTO notes VALUES ('kept')"))
        async with db.read_session() as session:
            assert await session.scalar(text("SELECT body FROM notes")) == "kept"
            # Read-only is still the server's rule, whichever way the session reads.
            assert await session.scalar(text("SHOW transaction_read_only")) == "on"


async def test_a_write_in_an_autocommit_read_session_is_still_refused_as_a_bug(
    postgres_url: str,
) -> None:
    url = multi_host_url(postgres_url, first_port=free_port())
    async with Database(url, read_sessions="autocommit") as db:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE notes (body text)"))
        with pytest.raises(DBAPIError) as raised:
            async with db.read_session() as session:
                await session.execute(text("INSERT INTO notes VALUES ('sneaked')"))
        # 25006 in a read-only session is the application's mistake, not a failover: it is
        # neither a lost connection nor an outage.
        assert not raised.value.connection_invalidated
        assert classify(raised.value) is Failure.OTHER
        async with db.session() as session:
            assert await session.scalar(text("SELECT count(*) FROM notes")) == 0
