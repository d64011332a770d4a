"""sessionwise: the correct async SQLAlchemy session lifecycle, as the default.

One `Database` owns the engine; every session it hands out, in a request or in a background
job, commits before control returns and rolls back on any error.
"""

from sessionwise.commit_hooks import after_commit
from sessionwise.config import DatabaseConfig, DatabaseSettings
from sessionwise.database import Database
from sessionwise.errors import Failure, classify
from sessionwise.exceptions import (
    ConcurrentSessionUseError,
    ConfigurationError,
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

# The one version source: the build reads it into the metadata (tool.hatch.version).
__version__ = "0.2.0.dev0"

__all__ = [
    "ConcurrentSessionUseError",
    "ConfigurationError",
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
    "__version__",
    "after_commit",
    "classify",
]
