"""Idempotency keys: a retried request takes effect once, even when its first answer was lost.

A client that may retry sends ``Idempotency-Key: "<unique value>"`` (IETF
``draft-ietf-httpapi-idempotency-key-header``). The first request with a key runs; its answer
is stored **in the request's own transaction**, so the record commits together with the effect
or not at all (a rolled back or failed commit leaves nothing, and the retry runs afresh). A
later request with the same key and the same fingerprint (method, path, body) gets the stored
answer instead of a second effect.

This module is framework-free; ``sessionwise.fastapi.idempotency`` is the HTTP side.

* `idempotency_table`: the table, added to *your* `MetaData` (and so to your migrations).
* `parse_idempotency_key`: the header's value, an RFC 8941 sf-string, checked.
* `request_fingerprint`: what "the same request" means.
* `IdempotencyStore`: ``lookup`` and ``save`` on the request's session, ``purge`` of expired
  records in small batches, each in a session of its own.

Concurrency: on PostgreSQL the lookup also takes a transaction-level advisory lock on the key
(``pg_try_advisory_xact_lock``, in the same statement), so a second request while the first
is running learns it at once (`IdempotencyKeyInUseError`, a 409) instead of doing the work
twice; the primary key is the last guard. On SQLite, write transactions already run one at a
time (sessionwise begins them ``IMMEDIATE``), so the second request waits for its turn and
then finds the stored answer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sessionwise.database import Database
from sessionwise.exceptions import SessionwiseError

__all__ = [
    "DEFAULT_RETENTION",
    "IDEMPOTENCY_KEY_HEADER",
    "MAX_KEY_LENGTH",
    "REPLAYED_HEADER",
    "IdempotencyError",
    "IdempotencyKeyInUseError",
    "IdempotencyKeyReusedError",
    "IdempotencyStore",
    "InvalidIdempotencyKeyError",
    "KeyedRequest",
    "StoredAnswer",
    "idempotency_table",
    "parse_idempotency_key",
    "request_fingerprint",
]

logger = logging.getLogger("sessionwise")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
"""Set to ``true`` on an answer that is a stored one, replayed."""

MAX_KEY_LENGTH = 255
"""Characters of a key (after unquoting). Stripe's limit, which the draft leaves open."""

DEFAULT_RETENTION = timedelta(hours=24)
"""How long a record is kept: the draft leaves it to the server; Stripe keeps 24 hours."""


class IdempotencyError(SessionwiseError):
    """Base class of the idempotency errors; each has an HTTP answer in the draft."""


class InvalidIdempotencyKeyError(IdempotencyError, ValueError):
    """The ``Idempotency-Key`` header is not a valid key (HTTP 400)."""


class IdempotencyKeyReusedError(IdempotencyError):
    """The key was used before for a different request (HTTP 422)."""


class IdempotencyKeyInUseError(IdempotencyError):
    """A request with this key is still running (HTTP 409; retry later)."""


def idempotency_table(metadata: MetaData, name: str = "idempotency_keys") -> Table:
    """The table of idempotency records, defined on *metadata* (yours: migrations see it).

    One row per ``(scope, key)``: the scope is whose key it is (an API key's user, a
    tenant), so equal key strings of different callers never meet.

    Args:
        metadata: The `MetaData` of your models; its naming convention names the
            constraints.
        name: The table's name.

    Example:
        >>> idempotency_keys = idempotency_table(Base.metadata)
        >>> store = IdempotencyStore(idempotency_keys, retention=timedelta(hours=48))
    """
    return Table(
        name,
        metadata,
        Column("scope", String(255), nullable=False),
        Column("key", String(MAX_KEY_LENGTH), nullable=False),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("headers", JSON, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # Purge deletes by expiry, in batches (IdempotencyStore.purge).
        Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
        PrimaryKeyConstraint("scope", "key"),
    )


def parse_idempotency_key(value: str) -> str:
    """The key in an ``Idempotency-Key`` header value: an RFC 8941 sf-string, unquoted.

    ``"abc"`` gives ``abc``; ``\\"`` and ``\\\\`` are the only escapes. Leading and trailing
    spaces are allowed (RFC 8941, 4.2); parameters are not.

    Raises:
        InvalidIdempotencyKeyError: the value is not a quoted string of printable ASCII, or
            the key is empty or longer than `MAX_KEY_LENGTH` characters. The message names
            the header and says what is wrong.
    """
    text = value.strip(" ")
    if not text.startswith('"'):
        raise _invalid('must be a quoted string (a Structured Field sf-string), e.g. "a1b2c3"')
    chars: list[str] = []
    position = 1
    while True:
        if position >= len(text):
            raise _invalid("the quoted string has no closing quote")
        char = text[position]
        position += 1
        if char == '"':
            break
        if not " " <= char <= "~":
            raise _invalid("only printable ASCII characters are allowed (no non-ASCII)")
        if char == "\\":
            if position >= len(text) or text[position] not in '"\\':
                raise _invalid('a backslash may only escape " or \\')
            char = text[position]
            position += 1
        chars.append(char)
    if position != len(text):
        raise _invalid("unexpected text after the closing quote (one quoted string only)")
    if not chars:
        raise _invalid("the key is empty")
    if len(chars) > MAX_KEY_LENGTH:
        raise _invalid(f"the key is longer than {MAX_KEY_LENGTH} characters")
    return "".join(chars)


def _invalid(reason: str) -> InvalidIdempotencyKeyError:
    return InvalidIdempotencyKeyError(f"{IDEMPOTENCY_KEY_HEADER}: {reason}")


def request_fingerprint(method: str, target: str, body: bytes) -> str:
    """SHA-256 (hex) of the method, the request target (path and query) and the body bytes.

    A retry sends the same bytes; a different body, even one that means the same, is a
    different request.
    """
    digest = hashlib.sha256()
    for part in (method.upper().encode(), target.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no ambiguous joins
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A request that carries a key: whose key (*scope*), the key, and its fingerprint."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as stored: status, the headers that matter, the body bytes."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def _advisory_lock_id(table: str, request: KeyedRequest) -> int:
    """A signed 64-bit id for ``pg_try_advisory_xact_lock``, from table, scope and key.

    A collision of two keys (odds 2**-64) costs a needless 409 and a retry, nothing else.
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in (table, request.scope, request.key):
        digest.update(part.encode())
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass(frozen=True, slots=True)
class _Statements:
    """The lookup and the save of one table on one dialect, built once."""

    lookup: Select[Any]
    save: Insert
    locks: bool  # PostgreSQL: the lookup also tries the key's advisory lock

    @classmethod
    def build(cls, table: Table, dialect: str) -> _Statements:
        match = and_(
            table.c.scope == bindparam("scope"),
            table.c.key == bindparam("key"),
            table.c.expires_at > bindparam("now"),
        )
        record = (table.c.fingerprint, table.c.status, table.c.headers, table.c.body)
        locks = dialect == "postgresql"
        if locks:
            # The lock and the lookup in one round trip: one row always (the LEFT JOIN), the
            # lock attempted whether or not a record exists. Held until the transaction ends.
            one = select(literal(1).label("one")).subquery("one")
            lock = func.pg_try_advisory_xact_lock(bindparam("lock_id", type_=BigInteger))
            lookup = select(lock.label("free"), *record).select_from(one.outerjoin(table, match))
        else:
            lookup = select(*record).where(match)
        insert = postgresql_insert if locks else sqlite_insert
        statement = insert(table)
        # An expired record is replaced; a live one (a concurrent request that won) is not,
        # and then no row is written: rowcount 0.
        save = statement.on_conflict_do_update(
            index_elements=[table.c.scope, table.c.key],
            set_={column.name: statement.excluded[column.name] for column in table.columns},
            where=table.c.expires_at <= bindparam("expired_by"),
        )
        return cls(lookup=lookup, save=save, locks=locks)


def _utc(now: datetime | None) -> datetime:
    # In UTC always: SQLite stores a DateTime as its wall-clock text, compared as text.
    return datetime.now(UTC) if now is None else now.astimezone(UTC)


class IdempotencyStore:
    """Looks up, saves and purges idempotency records in a table from `idempotency_table`.

    Its statements are built once, per dialect, and take every value as a bound parameter,
    so SQLAlchemy finds them in its compiled cache (building an ``INSERT ... ON CONFLICT``
    anew costs more CPU than running it).

    Args:
        table: The table.
        retention: How long a record is kept (published to clients; at least 24 h is the
            common promise). A record past it counts as absent, and is deleted by `purge`.
    """

    def __init__(self, table: Table, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self.table = table
        self.retention = retention
        self._statements: dict[str, _Statements] = {}

    def _for(self, dialect: str) -> _Statements:
        statements = self._statements.get(dialect)
        if statements is None:
            statements = self._statements[dialect] = _Statements.build(self.table, dialect)
        return statements

    async def lookup(
        self, session: AsyncSession, request: KeyedRequest, *, now: datetime | None = None
    ) -> StoredAnswer | None:
        """The stored answer for *request*, or None: then go ahead, and `save` the answer.

        One statement, in *session*'s transaction. Call it before the effect.

        Raises:
            IdempotencyKeyReusedError: the key was used for a different request.
            IdempotencyKeyInUseError: PostgreSQL: a request with the key is running.
        """
        connection = await session.connection()
        statements = self._for(connection.dialect.name)
        params = {"scope": request.scope, "key": request.key, "now": _utc(now)}
        if statements.locks:
            params["lock_id"] = _advisory_lock_id(self.table.name, request)
        row: Any = (await connection.execute(statements.lookup, params)).first()
        free = bool(row.free) if statements.locks else True
        if row is None or row.fingerprint is None:
            if not free:
                raise IdempotencyKeyInUseError(
                    f"{IDEMPOTENCY_KEY_HEADER}: a request with this key is still being "
                    "processed; retry after a moment"
                )
            return None
        if row.fingerprint != request.fingerprint:
            raise IdempotencyKeyReusedError(
                f"{IDEMPOTENCY_KEY_HEADER}: this key was already used for a different request "
                "(method, path or body differ); use a new key for a new request"
            )
        return StoredAnswer(status=row.status, body=bytes(row.body), headers=dict(row.headers))

    async def save(
        self,
        session: AsyncSession,
        request: KeyedRequest,
        answer: StoredAnswer,
        *,
        now: datetime | None = None,
    ) -> None:
        """Store *answer* for *request* in *session*'s transaction: one statement.

        Commits with the effect, or not at all. A record of the key that expired but is not
        purged yet is replaced.

        Raises:
            IdempotencyKeyInUseError: another request with the key committed meanwhile (its
                effect stands; this transaction must roll back, and the retry replays it).
        """
        now = _utc(now)
        connection = await session.connection()
        params = {
            "scope": request.scope,
            "key": request.key,
            "fingerprint": request.fingerprint,
            "status": answer.status,
            "headers": dict(answer.headers),
            "body": answer.body,
            "created_at": now,
            "expires_at": now + self.retention,
            "expired_by": now,
        }
        result = await connection.execute(self._for(connection.dialect.name).save, params)
        if result.rowcount != 1:
            raise IdempotencyKeyInUseError(
                f"{IDEMPOTENCY_KEY_HEADER}: a request with this key completed meanwhile; "
                "retry to get its answer"
            )

    async def purge(
        self, db: Database, *, now: datetime | None = None, batch_size: int = 500
    ) -> int:
        """Delete expired records, *batch_size* at a time, each batch its own transaction.

        Short transactions keep locks brief: on SQLite a batch holds the write lock for one
        small DELETE, so requests wait at most that long. Returns how many were deleted.
        """
        now = _utc(now)
        table = self.table
        expired = (
            select(table.c.scope, table.c.key).where(table.c.expires_at <= now).limit(batch_size)
        )
        statement = delete(table).where(tuple_(table.c.scope, table.c.key).in_(expired))
        deleted = 0
        while True:
            async with db.session() as session:
                connection: AsyncConnection = await session.connection()
                count = (await connection.execute(statement)).rowcount
            deleted += count
            if count < batch_size:
                break
        if deleted:
            logger.info("purged %d expired idempotency records from %s", deleted, table.name)
        return deleted
