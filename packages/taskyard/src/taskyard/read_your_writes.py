"""Read-your-writes per API key with read replicas, across processes and without client help.

A key's reads may run on a replica (sessionwise's ``db.read_session()``), which can lag. The
rule, kept server-side on the primary in the row every request's authentication reads
anyway (``api_keys.read_after_lsn``):

* after a request of the key commits a write, the primary's WAL position *after* that commit
  is stored on the key (`remember_write`). It cannot be stored inside the write's own
  transaction: its commit record comes after anything the transaction writes.
* after a change that takes access away from a user (removed from a project), the same is
  stored on every key of that user (`remember_lost_access`), so that user's next read cannot
  run on a replica that still shows the membership.
* a read request authenticates on the primary, reads that position in the same statement,
  and asks for a read session at least that fresh (``read_at_least``): a replica that has
  replayed it, else the primary.

So any worker of any process, on any host, sends the key's next read where its write is
visible; other keys keep reading from replicas. A revoked key fails at once because the
lookup itself is on the primary. Without replicas nothing here runs.

Recording runs after the commit (`sessionwise.after_commit`), before the response is sent. If
it fails (the primary went away just after the commit) the write stands and is answered as
such; the failure is logged, and that key's next reads may miss the write until the replicas
catch up (at most ``replica_max_lag``).
"""

from __future__ import annotations

import logging

from sqlalchemy import Update, update
from sqlalchemy.exc import SQLAlchemyError

from sessionwise import Database, Session, after_commit
from sessionwise.replicas import CURRENT_WRITE_POSITION
from taskyard.tables import table_of
from taskyard.users.models import ApiKey

__all__ = ["remember_lost_access", "remember_write"]

logger = logging.getLogger("taskyard")
_keys = table_of(ApiKey)


def remember_write(db: Database, session: Session, key_id: str) -> None:
    """After *session* commits, make key *key_id*'s reads at least that fresh."""
    statement = update(_keys).where(_keys.c.key_id == key_id)
    after_commit(session, lambda: _store_position(db, statement, "write"))


def remember_lost_access(db: Database, session: Session, user_id: int) -> None:
    """After *session* commits, make every key of *user_id* read at least that fresh."""
    statement = update(_keys).where(_keys.c.user_id == user_id)
    after_commit(session, lambda: _store_position(db, statement, "access change"))


async def _store_position(db: Database, statement: Update, what: str) -> None:
    # One autocommit statement on the primary: the position is read and stored at once.
    try:
        async with db.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(statement.values(read_after_lsn=CURRENT_WRITE_POSITION))
    except SQLAlchemyError as error:
        logger.warning(
            "read-your-writes position after a %s not stored (%s): the key's next reads "
            "may not see it until the replicas catch up",
            what,
            type(error).__name__,
        )
