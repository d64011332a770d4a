"""sessionwise: the correct async SQLAlchemy session lifecycle, as the default.

One `Database` owns the engine; every session it hands out, in a request or in a background
job, commits before control returns and rolls back on any error.
"""

from sessionwise.config import DatabaseConfig, DatabaseSettings
from sessionwise.database import Database
from sessionwise.errors import Failure, classify
from sessionwise.exceptions import (
    ConcurrentSessionUseError,
    DatabaseStateError,
    LazyLoadError,
    NestedSessionError,
    OpenStreamError,
    ReadOnlySessionError,
    SessionEndedError,
    SessionwiseError,
    WriteQueueTimeoutError,
)
from sessionwise.pool_status import PoolStatus
from sessionwise.session_class import Session

__all__ = [
    "ConcurrentSessionUseError",
    "Database",
    "DatabaseConfig",
    "DatabaseSettings",
    "DatabaseStateError",
    "Failure",
    "LazyLoadError",
    "NestedSessionError",
    "OpenStreamError",
    "PoolStatus",
    "ReadOnlySessionError",
    "Session",
    "SessionEndedError",
    "SessionwiseError",
    "WriteQueueTimeoutError",
    "classify",
]
