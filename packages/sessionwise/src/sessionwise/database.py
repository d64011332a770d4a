"""`Database`: one object that owns the engine and hands out correctly scoped sessions."""

from __future__ import annotations

import enum
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any, Generic, Self, cast, overload

import anyio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from typing_extensions import TypeVar

from sessionwise.app_hooks import run_app_hooks
from sessionwise.app_state import published
from sessionwise.commit_hooks import run_after_commit
from sessionwise.config import DatabaseConfig
from sessionwise.errors import cause, is_retryable
from sessionwise.exceptions import ConfigurationError, DatabaseStateError
from sessionwise.failover import discard_connections_to_standbys
from sessionwise.guards import (
    CALL_GATE_KEY,
    POOL_TURN_KEY,
    READ_ONLY_KEY,
    ROUTE_KEY,
    WRITE_TURN_KEY,
    CallGate,
    guarded_session_class,
    shut_out_other_tasks,
)
from sessionwise.lost_work import PendingChanges, log_given_up
from sessionwise.metrics.pools import instrument_pool
from sessionwise.metrics.recorder import MetricsRecorder
from sessionwise.metrics.sessions import SessionMeter, watch_session_class
from sessionwise.nesting import OpenSessions
from sessionwise.pool_status import PoolStatus, read_pool_status
from sessionwise.pool_turns import PoolTurn, PoolTurns
from sessionwise.postgres import (
    autocommit_reads,
    install_postgres_profile,
    postgres_engine_options,
    read_engine_options,
)
from sessionwise.replicas.monitor import ReplicaStatus
from sessionwise.replicas.positions import WalPosition
from sessionwise.replicas.replica_set import ReplicaSet
from sessionwise.replicas.routing import ReadRoute
from sessionwise.session_class import Session
from sessionwise.sqlite import (
    READ_ONLY_OPTION,
    WriterQueue,
    WriteTurn,
    install_sqlite_profile,
    is_memory_url,
    sqlite_engine_options,
)

__all__ = ["Database"]

_T = TypeVar("_T")
# The session class a Database hands out; SQLModel's (sessionwise.Session) unless the
# Database was given another (PEP 696 default, so a bare `Database` means Database[Session]).
SessionT = TypeVar("SessionT", bound=AsyncSession, default=Session)
logger = logging.getLogger("sessionwise")


class _State(enum.Enum):
    CREATED = "created"
    STARTED = "started"
    CLOSED = "closed"


class Database(Generic[SessionT]):
    """The engine, the session factory and the rules for every session, in one object.

    Create it at import time (it opens nothing), start it in the application's lifespan, and
    take sessions from it everywhere: requests (`sessionwise.fastapi.SessionDep`), background
    jobs and scripts (`async with db.session()`). Every session commits when its block ends
    without an error and rolls back otherwise, before control returns to the caller.

    Args:
        url: SQLAlchemy URL with an async driver. Overrides ``settings.url``. Required, here
            or in *settings*: there is no default database.
        settings: A `DatabaseConfig` (or `DatabaseSettings` read from the environment).
        session_class: The `AsyncSession` class (or subclass) to hand out. Defaults to
            `sessionwise.Session`: SQLModel's session (``exec()``) with SQLAlchemy's
            ``execute()``. Pass ``sqlalchemy.ext.asyncio.AsyncSession`` for plain SQLAlchemy;
            the Database is typed by it (``Database[AsyncSession]``), and so are its
            sessions.
        name: For an app with several databases: the lifespan publishes a named Database as
            ``app.state.sessionwise_databases[name]`` instead of
            ``app.state.sessionwise_database`` (which one app can have only one of).
        metrics: Where to report pool and session metrics (`sessionwise.metrics`), e.g.
            ``PrometheusMetrics()``; None measures nothing (but for
            ``slow_session_warning``, which needs no recorder).
        **options: Any `DatabaseConfig` field, e.g. ``pool_timeout=2.0``.

    Raises:
        ConfigurationError: No URL, neither as *url* nor in *settings*.

    Example:
        >>> db = Database("sqlite+aiosqlite:///./app.db", pool_timeout=2.0)
        >>> app = FastAPI(lifespan=db.lifespan)
    """

    @overload
    def __init__(
        self,
        url: str | None = None,
        *,
        settings: DatabaseConfig | None = None,
        session_class: type[SessionT],
        name: str | None = None,
        metrics: MetricsRecorder | None = None,
        **options: Any,
    ) -> None: ...

    @overload
    def __init__(
        self: Database[Session],
        url: str | None = None,
        *,
        settings: DatabaseConfig | None = None,
        name: str | None = None,
        metrics: MetricsRecorder | None = None,
        **options: Any,
    ) -> None: ...

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: DatabaseConfig | None = None,
        session_class: type[AsyncSession] = Session,
        name: str | None = None,
        metrics: MetricsRecorder | None = None,
        **options: Any,
    ) -> None:
        # Only what was set: which options were chosen matters (idle_in_transaction_timeout
        # behind PgBouncer), and the defaults are DatabaseConfig's anyway.
        base = settings.model_dump(exclude_unset=True) if settings is not None else {}
        if url is not None:
            base["url"] = url
        self.config = DatabaseConfig.model_validate({**base, **options})
        if self.config.url is None:
            raise ConfigurationError(
                'Database has no URL: pass one (Database("postgresql+asyncpg://user@host/db")),'
                " or read it from the environment with settings=DatabaseSettings() "
                '(SESSIONWISE_URL; DatabaseSettings(_env_prefix="APP_DB_") reads APP_DB_URL)'
            )
        self._url: str = self.config.url
        self.name = name
        self._session_class = cast("type[SessionT]", guarded_session_class(session_class))
        self._state = _State.CREATED
        self._open_sessions = OpenSessions()
        self._engine: AsyncEngine | None = None
        self._read_engine: AsyncEngine | None = None
        self._probe_engine: AsyncEngine | None = None
        # Its own pool, for read_sessions="autocommit" on PostgreSQL; else None.
        self._read_pool_engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[SessionT] | None = None
        self._read_sessions: async_sessionmaker[SessionT] | None = None
        self._memory_keeper: sqlite3.Connection | None = None
        self._writer_queue: WriterQueue | None = None
        # id() of each engine the session factories bind to -> the turns of its pool.
        self._pool_turns: dict[int, PoolTurns] = {}
        # With replica_urls: their pools and lag monitor (sessionwise.replicas); else None,
        # and read sessions take exactly the path they take without the feature.
        self._replicas: ReplicaSet | None = None
        self._routable_reads: async_sessionmaker[SessionT] | None = None
        self._metrics = metrics
        # Pool name -> engine, of every pool this Database opened (primary, read).
        self._engines: dict[str, AsyncEngine] = {}
        # id() of each engine the session factories bind to -> the meter of its sessions.
        self._session_meters: dict[int, SessionMeter] = {}

    def __repr__(self) -> str:
        url = make_url(self._url).render_as_string(hide_password=True)
        named = f" name={self.name!r}" if self.name is not None else ""
        return f"<Database{named} {url} {self._state.value}>"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the engine and the session factories. Opens no connection yet.

        Idempotent while started. A closed `Database` may be started again (a module-level
        ``db`` used by one test after another): it builds a new engine; an in-memory SQLite
        database starts empty again.
        """
        if self._state is _State.STARTED:
            return
        self._read_pool_engine = None
        self._writer_queue = None
        self._pool_turns = {}
        url = make_url(self._url)
        options: dict[str, Any] = {"echo": self.config.echo}
        if url.get_backend_name() == "sqlite":
            url, sqlite_options = sqlite_engine_options(url, self.config)
            options.update(sqlite_options)
            if not is_memory_url(url):
                # An in-memory database takes turns on its one pooled connection instead.
                self._writer_queue = WriterQueue(self.config.sqlite_busy_timeout)
            if is_memory_url(url):
                # Holds the shared in-memory database open while the pool's connection comes
                # and goes (SQLAlchemy docs, "Using a Memory Database with Multiple Coroutines").
                self._memory_keeper = sqlite3.connect(url.database or "", uri=True)
        elif url.get_backend_name() == "postgresql":
            options.update(postgres_engine_options(self.config, primary=True))
            if autocommit_reads(self.config):
                self._read_pool_engine = create_async_engine(
                    url, echo=self.config.echo, **read_engine_options(self.config, primary=True)
                )
                install_postgres_profile(self._read_pool_engine, self.config)
        else:
            options.update(pool_timeout=self.config.pool_timeout)
        engine = create_async_engine(url, **options)
        if url.get_backend_name() == "sqlite":
            install_sqlite_profile(engine, self.config)
        elif url.get_backend_name() == "postgresql":
            install_postgres_profile(engine, self.config)
            discard_connections_to_standbys(engine)
        read_options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if url.get_backend_name() == "postgresql":
            read_options["postgresql_readonly"] = True
        self._engine = engine
        # Read-only use of the main pool: on SQLite its BEGIN is DEFERRED, so a reader never
        # queues behind writers for the write lock.
        self._probe_engine = engine.execution_options(**read_options)
        self._read_engine = self._read_pool_engine or self._probe_engine
        if url.get_backend_name() == "postgresql":
            main = PoolTurns(
                self.config.pool_size + self.config.max_overflow, self.config.pool_timeout
            )
            self._pool_turns = {id(engine): main, id(self._probe_engine): main}
            if self._read_pool_engine is not None:
                read_size = self.config.read_pool_size or self.config.pool_size
                self._pool_turns[id(self._read_pool_engine)] = PoolTurns(
                    read_size + self.config.max_overflow, self.config.pool_timeout
                )
        self._sessions = self._sessionmaker(engine)
        self._read_sessions = self._sessionmaker(self._read_engine, info={READ_ONLY_KEY: True})
        self._routable_reads = self._read_sessions
        if self.config.replica_urls:
            self._replicas = ReplicaSet(self.config, self._url)
            self._pool_turns.update(self._replicas.start(self._read_engine))
        self._engines = {self.pool_name("primary"): engine}
        if self._read_pool_engine is not None:
            self._engines[self.pool_name("read")] = self._read_pool_engine
        if self._replicas is not None:
            for number, replica in enumerate(self._replicas.replicas, start=1):
                self._engines[self.pool_name(f"replica-{number}")] = replica.engine
        self._instrument()
        self._state = _State.STARTED
        logger.debug("started %r", self)

    async def close(self) -> None:
        """Dispose of the engine and close every pooled connection. Idempotent."""
        if self._state is not _State.STARTED:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        assert self._engine is not None
        if self._session_meters:
            for pool_name in self._engines:
                self._recorder.forget_pool(pool_name)
            self._session_meters = {}
        await self._engine.dispose()
        if self._read_pool_engine is not None:
            await self._read_pool_engine.dispose()
        if self._replicas is not None:
            await self._replicas.close()
            self._replicas = None
        if self._memory_keeper is not None:
            self._memory_keeper.close()
            self._memory_keeper = None
        logger.debug("closed %r", self)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """An ASGI lifespan: start, publish on ``app.state``; on shutdown undo both.

        Pass it as ``FastAPI(lifespan=db.lifespan)``, or enter it from your own lifespan with
        ``async with db.lifespan(app):``. It closes only what it started: a `Database` that
        was already started (by a test fixture, an outer ``async with db:``) stays open. The
        unnamed `Database` is published as ``app.state.sessionwise_database``, a named one in
        ``app.state.sessionwise_databases[name]`` (`sessionwise.app_state`). Imported adapters
        set the app up here too (`sessionwise.app_hooks`: `sessionwise.fastapi` installs its
        error handlers).

        Raises:
            DatabaseStateError: at startup, when another `Database` is already published on
                *app* under the same name (or, unnamed, as the app's database).
        """
        started_here = not self.started
        await self.start()
        try:
            with published(app, self):
                run_app_hooks(app, self)  # e.g. sessionwise.fastapi's error handlers
                yield
        finally:
            if started_here:
                await self.close()

    @property
    def started(self) -> bool:
        return self._state is _State.STARTED

    @property
    def engine(self) -> AsyncEngine:
        """The `AsyncEngine`; only once started."""
        self._require_started("engine")
        assert self._engine is not None
        return self._engine

    @property
    def engines(self) -> Mapping[str, AsyncEngine]:
        """Every engine with a pool of its own, by pool name (``primary``, ``read``).

        For instrumentation from outside, e.g. OpenTelemetry's SQLAlchemy statement spans.
        """
        self._require_started("engines")
        return dict(self._engines)

    def pool_name(self, role: str) -> str:
        """The name metrics give this Database's pool *role*: ``primary``, ``app.primary``."""
        return role if self.name is None else f"{self.name}.{role}"

    # -- sessions ---------------------------------------------------------------------------

    @property
    def session_factory(self) -> async_sessionmaker[SessionT]:
        """The factory behind `session()`. The test plugin rebinds it; prefer `session()`."""
        self._require_started("session_factory")
        assert self._sessions is not None
        return self._sessions

    @session_factory.setter
    def session_factory(self, factory: async_sessionmaker[SessionT]) -> None:
        self._require_started("session_factory")
        self._sessions = factory

    @property
    def read_session_factory(self) -> async_sessionmaker[SessionT]:
        self._require_started("read_session_factory")
        assert self._read_sessions is not None
        return self._read_sessions

    @read_session_factory.setter
    def read_session_factory(self, factory: async_sessionmaker[SessionT]) -> None:
        self._require_started("read_session_factory")
        self._read_sessions = factory

    def session(self) -> AbstractAsyncContextManager[SessionT]:
        """A session for one unit of work: committed when the block ends, else rolled back.

        This is the one implementation of the transaction boundary: the FastAPI dependency
        enters exactly this context manager.

        Example:
            >>> async with db.session() as session:
            ...     session.add(Task(title="x"))
            ... # committed here; an exception inside the block rolls back instead
        """
        return self._unit_of_work(self.session_factory, commit=True)

    def read_session(
        self, fresh_as: WalPosition | None = None, *, on_primary: bool = False
    ) -> AbstractAsyncContextManager[SessionT]:
        """A session for reads only: never commits, refuses to flush changes.

        On PostgreSQL the transaction is ``READ ONLY`` (or, with
        ``read_sessions="autocommit"``, there is none: each statement runs on its own on a
        read-only connection); on SQLite it begins DEFERRED, so readers never wait for the
        write lock.

        With ``replica_urls``, the whole session runs on one server, chosen at its first
        statement: a healthy replica at most ``replica_max_lag`` behind that has replayed
        *fresh_as* (if given), else the primary (`sessionwise.replicas`).

        Args:
            fresh_as: A position after the writes this session must see: from
                `primary_position` after they committed, or stored with
                `sessionwise.replicas.CURRENT_WRITE_POSITION`. `read_at_least` raises it
                later, before the first statement.
            on_primary: Run on the primary, e.g. for checks that must not lag (a revoked
                credential). Without replicas every read session does.
        """
        factory = self.read_session_factory
        if self._replicas is None or on_primary or factory is not self._routable_reads:
            return self._unit_of_work(factory, commit=False)
        return self._unit_of_work(factory, commit=False, route=self._replicas.route(fresh_as))

    async def primary_position(self) -> WalPosition:
        """The primary's WAL position now: at or past every commit that returned before.

        Pass it to `read_session` as ``fresh_as`` to read those writes back from any server
        (GitLab's load balancer keeps it per user for the same purpose). PostgreSQL only.
        """
        self._require_started("primary_position")
        if self._replicas is None:
            raise ConfigurationError(
                "primary_position() needs replica_urls: without replicas every read runs "
                "on the primary and sees every committed write"
            )
        assert self._probe_engine is not None
        return await self._replicas.primary_position(self._probe_engine)

    @property
    def replicated(self) -> bool:
        """Whether read sessions may run on replicas (``replica_urls`` set, started)."""
        return self._replicas is not None

    def replica_status(self) -> list[ReplicaStatus]:
        """Health, lag and replayed position of each replica, as the monitor last saw them."""
        return [] if self._replicas is None else self._replicas.status()

    @asynccontextmanager
    async def _unit_of_work(
        self,
        factory: async_sessionmaker[SessionT],
        *,
        commit: bool,
        route: ReadRoute | None = None,
    ) -> AsyncIterator[SessionT]:
        # A write session inside another of the same task is refused (sessionwise.nesting).
        one_connection = self._memory_keeper is not None
        with self._open_sessions.opening(write=commit, one_connection=one_connection):
            async with self._session_in(factory, commit=commit, route=route) as session:
                yield session
        if commit:  # reached only when the commit succeeded
            await run_after_commit(session)

    @asynccontextmanager
    async def _session_in(
        self,
        factory: async_sessionmaker[SessionT],
        *,
        commit: bool,
        route: ReadRoute | None = None,
    ) -> AsyncIterator[SessionT]:
        session = factory()
        if route is not None:
            session.info[ROUTE_KEY] = route
        turns: list[WriteTurn | PoolTurn] = []
        bind = factory.kw.get("bind")
        if commit and self._writer_queue is not None and bind is self._engine:
            # SQLite: take a place in the writer queue before the first statement. Not when the
            # factory is bound to one connection (the test plugin): that is a single writer.
            turns.append(self._writer_queue.turn())
            session.info[WRITE_TURN_KEY] = turns[-1]
        pool_turns = self._pool_turns.get(id(bind))
        if pool_turns is not None:
            # PostgreSQL: a place in line for a pooled connection (sessionwise.pool_turns).
            turns.append(pool_turns.turn())
            session.info[POOL_TURN_KEY] = turns[-1]
        meter = self._session_meters.get(id(bind))  # sessionwise.metrics, if metered
        record = meter.opened(session) if meter is not None else None
        error: BaseException | None = None
        try:
            yield session
            if commit:
                await (session.commit() if meter is None else meter.commit(session))
        except BaseException as raised:
            error = raised
            raise
        finally:
            # Shielded: a cancelled request must still hand its connection back, or the pool
            # leaks it while the server keeps the transaction open (sqlalchemy#8145, #12077).
            # close() rolls back whatever was not committed.
            with anyio.CancelScope(shield=True):
                await shut_out_other_tasks(session)
                try:
                    gate: CallGate | None = session.info.get(CALL_GATE_KEY)
                    if gate is None:
                        await session.close()
                    else:
                        async with gate.closing(session):
                            await session.close()
                finally:
                    for turn in turns:
                        turn.give_back()
                    # A routed read that went to a replica holds that pool's turn instead.
                    routed = session.info.get(POOL_TURN_KEY) if route is not None else None
                    if routed is not None:
                        routed.give_back()
                    if record is not None:
                        assert meter is not None
                        meter.ended(session, record, error, write=commit)

    async def run_transaction(
        self,
        work: Callable[[SessionT], Awaitable[_T]],
        *,
        retries: int = 3,
        backoff: float = 0.05,
        isolation_level: str | None = None,
    ) -> _T:
        """Run *work* in its own session, re-running it from scratch on a transient conflict.

        Serialization failures and deadlocks (PostgreSQL 40001 / 40P01) and lock waits that
        ran out (SQLite busy, PostgreSQL 55P03 ``lock_timeout``) mean "the same transaction,
        run again, can succeed"; each re-run may wait for the lock again. Each attempt gets a
        fresh session, so *work* must do all of its reads inside. Between attempts the wait
        grows exponentially with jitter.

        Args:
            work: ``async def work(session) -> T``; it must not commit, the session does.
            retries: Re-runs after the first attempt.
            backoff: First wait in seconds; doubled for every further attempt.
            isolation_level: e.g. ``"SERIALIZABLE"`` for this transaction only.

        When it gives up (retries used up, or an error no retry can fix), it logs one ERROR
        record on logger ``sessionwise`` naming *work*, the error and the changes that were
        rolled back (`sessionwise.lost_work`), then raises the error.
        """
        attempt = 0
        while True:
            pending = PendingChanges()
            try:
                async with self.session() as session:
                    try:
                        if isolation_level is not None:
                            await _begin_at(session, isolation_level)
                        return await work(session)
                    finally:
                        pending = PendingChanges(session)  # before a commit that may fail
            except Exception as error:
                if attempt >= retries or not is_retryable(error):
                    log_given_up(work, error, attempt + 1, pending)
                    raise
                delay = backoff * (2**attempt) * (0.5 + random.random())
                # The cause, not str(error): that carries the SQL and its parameters.
                reason = cause(error) or type(error).__name__
                logger.info("transaction conflict (%s), retry %d in %.3fs", reason, attempt, delay)
                attempt += 1
                await anyio.sleep(delay)

    # -- health ------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True if a connection of the main pool answers ``SELECT 1`` in time; never raises.

        "In time": within ``pool_timeout``, checkout included.
        """
        with anyio.move_on_after(self.config.pool_timeout):
            try:
                # The main pool, which every write needs: when it is exhausted the app is not
                # ready, even if a separate read pool still has room. Read-only, so that on
                # SQLite a probe never queues for the write lock (busy is not dead).
                self._require_started("ping")
                assert self._probe_engine is not None
                async with self._probe_engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                    return True
            except Exception as error:  # any failure means "not ready"; the caller reports it
                logger.warning("database ping failed: %s", error)
                return False
        return False

    def pool_status(self) -> PoolStatus:
        """Size, checked-out connections, overflow and waiting sessions of the pool.

        With ``read_sessions="autocommit"`` on PostgreSQL, of both pools together. Waiting
        counts the sessions in line for a connection, in the pool or before it.
        """
        status = read_pool_status(self.engine.pool)
        if self._read_pool_engine is not None:
            status = status + read_pool_status(self._read_pool_engine.pool)
        # Sessions wait in line for a turn before they ask the pool (sessionwise.pool_turns).
        in_line = sum(turns.waiting for turns in set(self._pool_turns.values()))
        return replace(status, waiting=status.waiting + in_line)

    # -- internals --------------------------------------------------------------------------

    @property
    def _recorder(self) -> MetricsRecorder:
        return self._metrics if self._metrics is not None else _NO_RECORDER

    def _instrument(self) -> None:
        """Meter every pool and its sessions (sessionwise.metrics), when anything listens."""
        self._session_meters = {}
        if self._metrics is None and self.config.slow_session_warning is None:
            return  # nothing installed: no listener, no cost
        watch_session_class(self._session_class)
        for pool_name, engine in self._engines.items():
            instrument_pool(
                engine, pool_name, self._recorder, turns=self._pool_turns.get(id(engine))
            )
            meter = SessionMeter(pool_name, self._recorder, self.config.slow_session_warning)
            self._session_meters[id(engine)] = meter
        # Read sessions of the main pool bind to its read-only view (the probe engine).
        assert self._engine is not None
        assert self._probe_engine is not None
        self._session_meters[id(self._probe_engine)] = self._session_meters[id(self._engine)]

    def _sessionmaker(
        self,
        bind: AsyncEngine | AsyncConnection,
        info: dict[str, Any] | None = None,
        **options: Any,
    ) -> async_sessionmaker[SessionT]:
        return async_sessionmaker(
            bind,
            **options,
            class_=self._session_class,
            # Objects stay readable after commit: re-loading them would need IO that
            # attribute access (and response serialization) cannot await.
            expire_on_commit=False,
            # close() is final: a session used after its unit of work raises, instead of
            # quietly checking out a connection that nobody will hand back (Session docs,
            # "close_resets_only").
            close_resets_only=False,
            info=info,
        )

    def _require_started(self, what: str) -> None:
        if self._state is _State.CREATED:
            raise DatabaseStateError(
                f"Database.{what} used before start(): use `FastAPI(lifespan=db.lifespan)`, "
                "`async with db:` or `await db.start()` first"
            )
        if self._state is _State.CLOSED:
            raise DatabaseStateError(
                f"Database.{what} used after close(): the engine is disposed. Start it again "
                "(`await db.start()`, `async with db:`) if that is intended; otherwise look for "
                "work still running after shutdown"
            )


_NO_RECORDER = MetricsRecorder()  # for slow_session_warning without metrics


async def _begin_at(session: AsyncSession, isolation_level: str) -> None:
    """Begin *session*'s transaction at *isolation_level*, unless its level is fixed already.

    A session joined to an external connection's transaction (the test plugin's outer
    transaction) cannot change it: PostgreSQL fixes a transaction's level at its first
    statement, and SQLAlchemy refuses to alter it mid-transaction. That transaction's level
    applies (``sessionwise.testing`` can begin it at a chosen level).
    """
    if isinstance(session.bind, AsyncConnection) and session.bind.in_transaction():
        level = await session.bind.get_isolation_level()
        if level.upper() != isolation_level.upper():
            logger.info(
                "isolation_level=%r not applied: the session joins an outer transaction at %r",
                isolation_level,
                level,
            )
        return
    bind = session.bind
    if bind is not None and bind.dialect.name == "sqlite" and isolation_level == "SERIALIZABLE":
        # SQLite's transactions are serializable already; setting the level would also switch
        # the pooled connection into the driver's implicit BEGIN (pysqlite dialect,
        # set_isolation_level), which the SQLite profile turned off.
        return
    await session.connection(execution_options={"isolation_level": isolation_level})
