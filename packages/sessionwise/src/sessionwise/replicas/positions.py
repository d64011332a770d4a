"""Positions in the primary's write-ahead log: the unit of "at least this fresh".

A PostgreSQL commit is durable once its WAL record is written; a streaming replica shows it
once it has *replayed* that record. Both are byte positions in one log (an LSN), so "has this
replica seen that write?" is a comparison of two integers: its ``pg_last_wal_replay_lsn()``
against the primary's ``pg_current_wal_insert_lsn()`` read after the write committed (the
technique of GitLab's database load balancer, which keeps that position per user). PostgreSQL
docs, "System Administration Functions" (9.27.3 and 9.27.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, ColumnElement, literal_column

__all__ = [
    "CURRENT_WRITE_POSITION",
    "PRIMARY_POSITION_SQL",
    "REPLICA_POSITION_SQL",
    "WalPosition",
]

# pg_lsn minus pg_lsn is a numeric byte count; as a bigint it is an ordinary integer to the
# driver and to a BIGINT column (an LSN stays below 2**63 for 8 EiB of WAL).
PRIMARY_POSITION_SQL = "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
# NULL on a server that is not in recovery (a primary, or a replica that was promoted).
REPLICA_POSITION_SQL = (
    "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"
)

CURRENT_WRITE_POSITION: ColumnElement[int] = literal_column(PRIMARY_POSITION_SQL, BigInteger)
"""The primary's current WAL position as a SQL expression, e.g. a column value to store.

Evaluated on the primary *after* a transaction committed, it is at or past that commit's WAL
record: a replica that has replayed up to it shows the transaction. Inside the transaction it
would not be (the commit record comes later).
"""


@dataclass(frozen=True, order=True, slots=True)
class WalPosition:
    """A WAL position (LSN), as a byte offset; ordered, so ``replayed >= needed`` reads right.

    Attributes:
        lsn: Bytes from the start of the WAL. ``str()`` gives PostgreSQL's ``16/B374D848``.
    """

    lsn: int

    @classmethod
    def parse(cls, text: str) -> WalPosition:
        """``WalPosition.parse("16/B374D848")``, PostgreSQL's text form of a ``pg_lsn``.

        Raises:
            ValueError: *text* is not two hexadecimal numbers joined by ``/``.
        """
        high, slash, low = text.strip().partition("/")
        invalid = ValueError(f"not a WAL position (expected e.g. '16/B374D848'): {text!r}")
        if not slash:
            raise invalid
        try:
            high_part, low_part = int(high, 16), int(low, 16)
        except ValueError:
            raise invalid from None
        if not (0 <= high_part < 1 << 32 and 0 <= low_part < 1 << 32):
            raise invalid
        value = (high_part << 32) | low_part
        return cls(value)

    def __str__(self) -> str:
        return f"{self.lsn >> 32:X}/{self.lsn & 0xFFFFFFFF:X}"
