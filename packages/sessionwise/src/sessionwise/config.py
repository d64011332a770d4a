"""Engine, pool and driver options, from keyword arguments or from the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sessionwise.exceptions import ConfigurationError

__all__ = ["DatabaseConfig", "DatabaseSettings"]


class DatabaseConfig(BaseModel):
    """Every option a `Database` understands, validated; unknown names are an error.

    Attributes:
        url: SQLAlchemy URL with an async driver (``sqlite+aiosqlite``, ``postgresql+asyncpg``).
            There is no default database: a `Database` without a URL raises
            `ConfigurationError` (a deploy that forgot its URL variable must not quietly write
            to a local file). ``None`` here leaves it to the `Database`'s ``url`` argument.
        pool_size: Connections the pool opens as they are needed and then keeps open.
        max_overflow: Extra connections beyond ``pool_size``, closed as soon as they are
            returned while ``pool_size`` idle ones wait in the pool. Off by default: an async
            worker runs many requests at once, and with overflow every burst above
            ``pool_size`` reconnects over and over (a new PostgreSQL connection costs
            milliseconds of CPU on both sides and prepares every statement anew). The default
            ceiling is SQLAlchemy's (5 + 10 = 15), kept open instead of churned.
        pool_timeout: Seconds a session waits for a connection before failing. Short on
            purpose: a request that cannot get a connection in time should answer 503 fast,
            not hang for SQLAlchemy's default of 30 s.
        pool_recycle: Close pooled connections older than this many seconds (None: never).
        pool_pre_ping: Check each connection on checkout, so that a database restart costs no
            failed request: every checkout looks (without a round trip) whether the server
            closed the connection, and one idle for over ``pool_pre_ping_idle`` seconds is
            also pinged (`sessionwise.liveness`).
        pool_pre_ping_idle: Seconds a pooled connection may sit unused and still be handed out
            without a ping round trip (0: ping on every checkout).
        statement_timeout: PostgreSQL ``statement_timeout`` in seconds (None: server default).
            A statement cut off answers 504 in FastAPI.
        lock_timeout: PostgreSQL ``lock_timeout`` in seconds (None: server default, no
            limit): how long a statement waits for a lock (a row another transaction updates,
            a table under ``LOCK`` or a migration) before it fails with SQLSTATE 55P03, a 503
            with ``Retry-After`` in FastAPI. Without it a request blocked behind a lock holds
            its connection for as long as the lock is held. Keep it below
            ``statement_timeout``, which also counts the lock wait. Behind PgBouncer it is
            set with ``SET LOCAL`` per transaction, as the other timeouts.
        idle_in_transaction_timeout: PostgreSQL ``idle_in_transaction_session_timeout`` in
            seconds: the server ends a session that sits inside a transaction without a
            statement for that long. 60 s by default, as a backstop: a transaction leaked by
            a bug (or by a client that vanished mid-stream behind middleware that never
            cleans up, issue 17.3) otherwise holds its locks, its connection and vacuum's
            horizon until the process exits, while no request or job of a web service
            legitimately pauses a minute between two statements of one transaction (a
            running statement is ``statement_timeout``'s business). Raise it, or set None
            (the server's default, usually off), for jobs that think longer inside a
            transaction. Behind PgBouncer (``pgbouncer=True``) the default is not applied:
            there it would cost a ``SET LOCAL`` statement in every transaction; use
            PgBouncer's ``idle_transaction_timeout`` or ``ALTER ROLE ... SET
            idle_in_transaction_session_timeout``, or set this option explicitly to pay
            for the statement. (Without ``pgbouncer=True``, PgBouncer refuses the setting
            as an unknown startup parameter: every connection fails at once.)
        client_connection_check_interval: PostgreSQL (14+) ``client_connection_check_interval``
            in seconds: how soon the server aborts a running query whose client went away. A
            session cancelled mid-query closes its connection; without this check the query
            runs on to its end and its backend stays busy (None: server default, off).
            Behind PgBouncer it is not sent; set it on the server or role instead.
        read_sessions: How `Database.read_session` reads on PostgreSQL. ``"transaction"``:
            one ``READ ONLY`` transaction, so every statement sees the same snapshot.
            ``"autocommit"``: connections from a pool of their own, each statement its own
            transaction, read-only by server setting (``default_transaction_read_only``);
            saves the ``BEGIN`` and ``ROLLBACK`` round trips of every read session, and each
            statement sees what was committed when it started. For reads of one statement,
            or of statements that need not agree (a key lookup, then the data). Behind
            PgBouncer, and on SQLite, read sessions always use a transaction.
        read_pool_size: Connections of the read pool (``read_sessions="autocommit"``);
            ``None``: ``pool_size``.
        application_name: Shown in ``pg_stat_activity``.
        pgbouncer: Set when connecting through PgBouncer in transaction mode: disables both
            prepared-statement caches (asyncpg's and SQLAlchemy's) and gives statements
            unique names.
        replica_urls: Streaming replicas of the primary (PostgreSQL), as URLs of the same
            driver; from the environment a JSON list
            (``SESSIONWISE_REPLICA_URLS='["postgresql+asyncpg://u@replica1/db"]'``).
            `Database.read_session` runs on one of them when it is healthy and fresh enough,
            else on the primary; `Database.session` never does (`sessionwise.replicas`).
        replica_max_lag: Seconds a replica may be behind the primary, measured by WAL
            position, and still serve reads.
        replica_check_interval: Seconds between two checks of every replica's lag and health
            (one statement on each server and on the primary per check).
        slow_session_warning: Seconds a session may last (from its creation until its
            connection is back in the pool) before sessionwise logs a WARNING on logger
            ``sessionwise`` naming what held it (the route, in FastAPI), the hold time and
            its statement count (`sessionwise.metrics.sessions`). None: no warning.
        sqlite_busy_timeout: Seconds SQLite waits for a lock before "database is locked".
        echo: Log every statement.
    """

    # URLs carry passwords: a validation error must not print the value it refused.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str | None = None
    pool_size: int = Field(default=15, ge=1)
    max_overflow: int = Field(default=0, ge=0)
    pool_timeout: float = Field(default=5.0, gt=0)
    pool_recycle: int | None = Field(default=None, gt=0)
    pool_pre_ping: bool = True
    pool_pre_ping_idle: float = Field(default=1.0, ge=0)
    statement_timeout: float | None = Field(default=None, gt=0)
    lock_timeout: float | None = Field(default=None, gt=0)
    idle_in_transaction_timeout: float | None = Field(default=60.0, gt=0)
    client_connection_check_interval: float | None = Field(default=1.0, gt=0)
    read_sessions: Literal["transaction", "autocommit"] = "transaction"
    read_pool_size: int | None = Field(default=None, ge=1)
    application_name: str = "sessionwise"
    pgbouncer: bool = False
    replica_urls: tuple[str, ...] = ()
    replica_max_lag: float = Field(default=10.0, gt=0)
    replica_check_interval: float = Field(default=0.5, gt=0)
    slow_session_warning: float | None = Field(default=None, gt=0)
    sqlite_busy_timeout: float = Field(default=5.0, ge=0)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    echo: bool = False

    @field_validator("replica_urls")
    @classmethod
    def _replicas_are_postgres(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            try:
                backend = make_url(url).get_backend_name()
            except ArgumentError:
                raise ValueError("a replica URL is not a SQLAlchemy URL") from None
            if backend != "postgresql":
                raise ValueError(
                    f"replicas are PostgreSQL streaming replicas; {_shown(url)} is {backend}"
                )
        if len(set(urls)) != len(urls):
            raise ValueError("a replica URL is listed twice")
        return urls

    @model_validator(mode="after")
    def _replicas_of_postgres(self) -> Self:
        if self.replica_urls and self.url is not None:
            backend = make_url(self.url).get_backend_name()
            if backend != "postgresql":
                raise ValueError(f"replica_urls need a PostgreSQL primary, not {backend}")
            if self.url in self.replica_urls:
                raise ValueError("the primary's URL is listed among replica_urls")
        return self


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class DatabaseSettings(BaseSettings, DatabaseConfig):
    """`DatabaseConfig` read from environment variables.

    The prefix is the caller's: ``DatabaseSettings(_env_prefix="APP_DB_")`` reads
    ``APP_DB_URL``, ``APP_DB_POOL_SIZE`` and so on (default prefix: ``SESSIONWISE_``). Keyword
    arguments win over the environment.

    Raises:
        ConfigurationError: Neither the environment (``<prefix>URL``) nor a keyword argument
            gives a URL.
    """

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="SESSIONWISE_", hide_input_in_errors=True
    )

    if not TYPE_CHECKING:  # type checkers keep the typed __init__ pydantic-settings makes

        def __init__(self, **values: Any) -> None:
            super().__init__(**values)
            if self.url is None:
                # The prefix in use: the caller's _env_prefix, else the class's.
                prefix = values.get("_env_prefix") or self.model_config.get("env_prefix", "")
                raise ConfigurationError(
                    f"no database URL: set the environment variable {prefix}URL (e.g. "
                    f"{prefix}URL=postgresql+asyncpg://user@host/db), or pass "
                    "DatabaseSettings(url=...)"
                )
