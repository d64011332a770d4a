"""A throwaway primary with one streaming replica, shared by the replica tests of a session.

``log_statement=all`` with the application name in front of every log line, on both servers:
the tests count the statements each server ran for taskyard (``application_name=taskyard``),
apart from the replica monitor's own (``taskyard-replica-monitor``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.postgres_cluster import PostgresCluster, throwaway_cluster, throwaway_replica

_COUNTED = {"log_statement": "all", "log_line_prefix": "'%a|'"}


@dataclass
class Replicated:
    primary: PostgresCluster
    replica: PostgresCluster

    def urls(self, database: str) -> tuple[str, str]:
        return self.primary.url(database), self.replica.url(database)

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Block until the replica has replayed everything the primary has written so far."""
        target = self.primary.current_lsn()
        deadline = time.monotonic() + timeout
        while self.replica.replayed_lsn() < target:
            if time.monotonic() > deadline:
                raise AssertionError("the replica did not catch up with the primary")
            time.sleep(0.02)

    def ensure_streaming(self) -> None:
        """Undo what a failed test may have left: a stopped or paused replica."""
        if not self.replica.is_running():
            self.replica.start()
        self.replica.resume_replay()


@contextmanager
def replicated_pair() -> Iterator[Replicated]:
    with throwaway_cluster(_COUNTED) as primary, throwaway_replica(primary, _COUNTED) as replica:
        yield Replicated(primary, replica)


@contextmanager
def replicated_database(pair: Replicated) -> Iterator[str]:
    """A new database on the primary (replicated to the replica); dropped at the end."""
    pair.ensure_streaming()
    name = f"sw_test_replicas_{uuid.uuid4().hex[:10]}"
    pair.primary.create_database(name)
    try:
        yield name
    finally:
        pair.ensure_streaming()
        pair.primary.drop_database(name)


def statement_count(cluster: PostgresCluster, application: str, pattern: str = "") -> int:
    """Statements the server logged for *application* so far whose text matches *pattern*.

    log_statement logs a simple-protocol statement as ``statement: ...`` and each execution
    of a prepared one (asyncpg's way) as ``execute <name>: ...``.
    """
    line = re.compile(
        rf"^{re.escape(application)}\|.*LOG:  (?:statement|execute [^:]*): (.*)$", re.MULTILINE
    )
    text = cluster.log_file.read_text(errors="replace")
    wanted = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    return sum(1 for match in line.finditer(text) if wanted.search(match.group(1)))
