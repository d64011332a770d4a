"""Service settings, read from ``TASKYARD_*`` environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sessionwise import DatabaseConfig

__all__ = ["DEFAULT_DATABASE_URL", "MAX_BODY_SIZE", "Settings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./taskyard.db"
MAX_BODY_SIZE = 1024 * 1024
APPLICATION_NAME = "taskyard"


# Where taskyard differs from sessionwise's defaults. Its read endpoints run one statement
# after the key lookup, and none needs the two to see one snapshot, so reads skip the
# BEGIN/ROLLBACK round trips (read_sessions="autocommit"; server-enforced read-only). That
# adds a read pool: 10 + 10 connections per process keeps 4 workers under PostgreSQL's
# default max_connections of 100.
#
# No database wait is unbounded, so that a request blocked behind a lock (a long transaction,
# a migration, a LOCK TABLE) answers within 10 s: pool_timeout (5 s, sessionwise's default)
# for a connection, then lock_timeout for a lock, a 503 with Retry-After; statement_timeout
# ends any statement running longer, a 504. It also counts the lock wait, so it is the larger.
# On SQLite, sqlite_busy_timeout (5 s) is the bound.
_DATABASE_DEFAULTS: dict[str, Any] = {
    "application_name": APPLICATION_NAME,
    "read_sessions": "autocommit",
    "pool_size": 10,
    "read_pool_size": 10,
    "lock_timeout": 2.0,
    "statement_timeout": 4.0,
    # A request's session held over a second is worth a WARNING naming the route (issue 13).
    "slow_session_warning": 1.0,
}


class Settings(BaseSettings):
    """Everything `create_app` needs.

    ``TASKYARD_DATABASE_URL`` picks the database; pool and driver options are sessionwise's
    `DatabaseConfig` fields, nested: ``TASKYARD_DATABASE__POOL_TIMEOUT=2``.
    ``TASKYARD_SECRET_KEY`` signs pagination cursors; without it each process signs with a
    random key (``taskyard serve`` generates one shared by all of its workers).
    ``TASKYARD_IDEMPOTENCY_RETENTION_HOURS`` (at least 24) is how long idempotency keys are
    kept; the server purges expired ones every ``TASKYARD_IDEMPOTENCY_PURGE_INTERVAL``
    seconds. A failed attempt is retried ``TASKYARD_RETRY_BASE_DELAY * 2 ** (n - 1)`` seconds
    after the *n*-th failure, at most ``TASKYARD_RETRY_MAX_DELAY``, less up to
    ``TASKYARD_RETRY_JITTER`` of it at random.

    Operations (issue 13, docs/operations.md): ``TASKYARD_METRICS=false`` turns the metrics
    and ``/metrics`` off; ``TASKYARD_METRICS_TOKEN`` lets non-loopback clients scrape
    ``/metrics`` with it as a bearer token; ``TASKYARD_OTLP_ENDPOINT`` (e.g.
    ``http://collector:4318/v1/traces``) turns tracing on and exports the spans there by
    OTLP over HTTP, as service ``TASKYARD_OTEL_SERVICE_NAME``.
    """

    model_config = SettingsConfigDict(
        env_prefix="TASKYARD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    database: DatabaseConfig = DatabaseConfig(**_DATABASE_DEFAULTS)
    secret_key: SecretStr | None = None
    max_body_size: int = Field(default=MAX_BODY_SIZE, ge=0)
    # Idempotency keys (taskyard.idempotency): kept at least a day, the common promise.
    idempotency_retention_hours: float = Field(default=24.0, ge=24.0)
    idempotency_purge_interval: float = Field(default=300.0, gt=0)
    metrics: bool = True
    metrics_token: SecretStr | None = None
    otlp_endpoint: str | None = None
    otel_service_name: str = APPLICATION_NAME
    # Retries of failed attempts (taskyard.tasks.backoff): the first within 10 s.
    retry_base_delay: float = Field(default=10.0, ge=0)
    retry_max_delay: float = Field(default=3600.0, ge=0)
    retry_jitter: float = Field(default=0.5, ge=0, le=1)

    @field_validator("database", mode="before")
    @classmethod
    def _taskyard_defaults(cls, value: Any) -> Any:
        # Options given piecewise (TASKYARD_DATABASE__POOL_SIZE=...) keep taskyard's other
        # defaults unless they set them.
        if isinstance(value, dict):
            return {**_DATABASE_DEFAULTS, **value}
        return value
