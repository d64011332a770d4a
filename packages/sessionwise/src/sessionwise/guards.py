"""Guards that turn silent session misuse into errors that say what to do.

* Concurrent use: an `AsyncSession` owns one connection and one transaction. Two tasks that
  await it at the same time interleave statements on that connection, which either corrupts
  the transaction or fails later with a driver error far from the cause. Every IO method of a
  guarded session records the task using it; a second task entering while the first is inside
  raises `ConcurrentSessionUseError` at once, whether or not the pool happens to be busy.
  Once the unit of work ends, other tasks are shut out: cleanup waits for a call still in
  flight, refuses any new one, and only then closes.
* Lazy IO: attribute access cannot await, so a lazy load or an expired-attribute refresh
  outside an awaited session call would die with a bare ``MissingGreenlet``. An ORM
  ``do_orm_execute`` hook sees the load before any IO starts and raises `LazyLoadError`
  naming the attribute and the fix.
* Read-only sessions: a ``before_flush`` hook refuses to write.
* Use after the end: a session is closed for good after its unit of work; any IO call on it
  afterwards, from any task, raises `SessionEndedError` saying so (and how to stream rows
  past the end of a request). Streamed results are counted, so that an adapter can refuse to
  end a unit of work while one is still being read (`open_streams`).

A session may also carry a `CallGate` (``session.info[CALL_GATE_KEY]``) that every IO call and
the final close pass through: the test plugin's, which makes sessions of separate tasks take
turns on the one connection they share (`sessionwise.testing`).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from time import perf_counter
from types import FrameType
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm import attributes as orm_attributes
from sqlalchemy.util.concurrency import in_greenlet

from sessionwise.exceptions import (
    ConcurrentSessionUseError,
    LazyLoadError,
    ReadOnlySessionError,
    SessionEndedError,
)

__all__ = [
    "CALL_GATE_KEY",
    "POOL_TURN_KEY",
    "READ_ONLY_KEY",
    "ROUTE_KEY",
    "SESSION_RECORD_KEY",
    "TURN_KEYS",
    "WRITE_TURN_KEY",
    "CallGate",
    "guarded_session_class",
    "open_streams",
    "refused_lazy_load",
    "shut_out_other_tasks",
]

READ_ONLY_KEY = "sessionwise.read_only"
WRITE_TURN_KEY = "sessionwise.write_turn"
POOL_TURN_KEY = "sessionwise.pool_turn"
TURN_KEYS = (POOL_TURN_KEY, WRITE_TURN_KEY)
CALL_GATE_KEY = "sessionwise.call_gate"
# A read session that a replica may serve: its server is chosen at the first IO call
# (sessionwise.replicas.routing.ReadRoute).
ROUTE_KEY = "sessionwise.read_route"
# The session's measurements (sessionwise.metrics.sessions.SessionRecord), when metered.
SESSION_RECORD_KEY = "sessionwise.metrics.record"
_LAZY_LOAD_ERROR_KEY = "sessionwise.lazy_load_error"

# Every AsyncSession coroutine method that reaches the connection. close() and invalidate()
# are left out on purpose: they are the cleanup path, and must still run (and hand the
# connection back) after a guard has refused an overlapping call.
_IO_METHODS = (
    "execute",
    "exec",  # SQLModel's AsyncSession
    "scalar",
    "scalars",
    "get",
    "get_one",
    "stream",
    "stream_scalars",
    "merge",
    "delete",
    "refresh",
    "flush",
    "commit",
    "rollback",
    "reset",
    "connection",
    "run_sync",
)

_STREAM_METHODS = ("stream", "stream_scalars")

_OWNER = "_sessionwise_owner"
_IDLE = "_sessionwise_idle"
_CLOSER = "_sessionwise_closer"
_STREAMS = "_sessionwise_streams"
_T = TypeVar("_T")
_S = TypeVar("_S", bound=AsyncSession)


class CallGate(Protocol):
    """What every IO call of a session, and its close, pass through (see the module doc)."""

    def call(self, session: AsyncSession, method: str) -> AbstractAsyncContextManager[None]:
        """Held while *session* runs its IO method *method*."""
        ...

    def closing(self, session: AsyncSession) -> AbstractAsyncContextManager[None]:
        """Held while *session* closes at the end of its unit of work."""
        ...


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def _guard(
    method: Callable[..., Coroutine[Any, Any, _T]],
) -> Callable[..., Coroutine[Any, Any, _T]]:
    @functools.wraps(method)
    async def guarded(self: AsyncSession, *args: Any, **kwargs: Any) -> _T:
        task = _current_task()
        owner = getattr(self, _OWNER, None)
        if owner is task:  # re-entry from the same task, e.g. exec() calling execute()
            return await method(self, *args, **kwargs)
        closer = getattr(self, _CLOSER, None)
        if closer is not None:
            raise SessionEndedError(
                f"{method.__name__}() was called on a session whose unit of work has ended "
                f"(ended in task {closer.get_name()!r}; called from task "
                f"{task.get_name() if task else None!r}): its transaction is over and its "
                "connection is back in the pool. A session lives exactly as long as its "
                "`async with db.session()` block, or, in FastAPI, its request (SessionDep "
                "ends before the response is sent). To stream rows to the client, let the "
                "response own a session: `return SessionStreamingResponse(db, rows)` "
                "(sessionwise.fastapi); for concurrent work, give every task its own session."
            )
        if owner is not None:
            raise ConcurrentSessionUseError(
                f"{method.__name__}() was called on a session that task {owner.get_name()!r} "
                f"is still using (from task {task.get_name() if task else None!r}). A session "
                "is one connection and one transaction: give every concurrent task its own, "
                "e.g. `async with db.session() as session:` inside the task."
            )
        setattr(self, _OWNER, task)
        setattr(self, _IDLE, idle := asyncio.Event())
        try:
            record = self.info.get(SESSION_RECORD_KEY)
            if record is not None and record.asked_at is None:
                record.asked_at = perf_counter()  # its wait for a connection starts here
            # Before the first statement: the server of a routed read (it takes its own
            # turn), a turn for a pooled connection (PostgreSQL), and SQLite write sessions
            # queue for the writer.
            route = self.info.get(ROUTE_KEY)
            if route is not None and not route.settled:
                await route.settle(self)
            for key in TURN_KEYS:
                turn = self.info.get(key)
                if turn is not None and not turn.held:
                    await turn.take()
            gate: CallGate | None = self.info.get(CALL_GATE_KEY)
            if gate is None:
                return await method(self, *args, **kwargs)
            async with gate.call(self, method.__name__):
                return await method(self, *args, **kwargs)
        finally:
            setattr(self, _OWNER, None)
            idle.set()

    return guarded


def _tracked_stream(
    method: Callable[..., Coroutine[Any, Any, _T]],
) -> Callable[..., Coroutine[Any, Any, _T]]:
    # stream() and stream_scalars() return a result that reads on from a server-side cursor
    # of the session's connection; it is only good while the session's unit of work lasts.
    # Recorded so that the end of a unit of work can tell a result still being read from one
    # that was read to the end (`open_streams`).
    @functools.wraps(method)
    async def tracked(self: AsyncSession, *args: Any, **kwargs: Any) -> _T:
        result = await method(self, *args, **kwargs)
        streams: list[Any] | None = self.__dict__.get(_STREAMS)
        if streams is None:
            self.__dict__[_STREAMS] = streams = []
        streams.append(result)
        return result

    return tracked


def open_streams(session: AsyncSession) -> int:
    """How many results of ``session.stream()`` / ``stream_scalars()`` are still unread.

    A result read to the end (or closed) has released its cursor ("soft closed" in
    SQLAlchemy's terms: ``Result._soft_closed``, set when the cursor is exhausted or closed).
    """
    streams: list[Any] | None = session.__dict__.get(_STREAMS)
    if not streams:
        return 0
    return sum(
        1
        for result in streams
        if not getattr(getattr(result, "_real_result", result), "_soft_closed", True)
    )


async def shut_out_other_tasks(session: AsyncSession) -> None:
    """Refuse every further IO call on *session*; wait for one of another task in flight.

    From then on any IO call raises `SessionEndedError`, from this task too (the session is
    about to be closed for good).

    After a refused overlapping call, the task that was first may still be mid-statement;
    closing under it would fail (SQLAlchemy's ``isce``) and could strand the connection. And
    once its call returns, that task may go on to its next call: on a closed session that
    would check out a fresh connection that nobody returns. So cleanup first shuts the door,
    then waits until no other task is inside, then closes.
    """
    current = _current_task()
    setattr(session, _CLOSER, current)
    while True:
        owner = getattr(session, _OWNER, None)
        idle: asyncio.Event | None = getattr(session, _IDLE, None)
        if owner is None or owner is current or idle is None:
            return
        await idle.wait()


def _attribute_being_read() -> str | None:
    """``Model.attribute`` whose read set off the current load, or None outside a read.

    The ORM event sees only the query it is about to run (for an expired object: every expired
    column), not the attribute access behind it; the innermost attribute ``get()`` on the call
    stack is that access. Called only on the way to an error, so the walk costs nothing on the
    normal path.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "get" and code.co_filename == orm_attributes.__file__:
            key = getattr(frame.f_locals.get("self"), "key", None)
            model = getattr(frame.f_locals.get("state"), "class_", None)
            if isinstance(key, str) and isinstance(model, type):
                return f"{model.__name__}.{key}"
        frame = frame.f_back
    return None


def _describe_load(state: ORMExecuteState) -> tuple[str, str, str]:
    """(Model.attribute, what else the load fetches, fix) for a load refused by the guard."""
    read = _attribute_being_read()
    if state.is_relationship_load and state.lazy_loaded_from is not None:
        model = state.lazy_loaded_from.class_.__name__
        prop = state.loader_strategy_path[-1] if state.loader_strategy_path else None
        attr = getattr(prop, "key", "?")
        fix = (
            f"load it in the query with `.options(selectinload({model}.{attr}))`, or read it "
            f"with `await obj.awaitable_attrs.{attr}`"
        )
        return read or f"{model}.{attr}", "", fix
    refresh_state = state.load_options._refresh_state  # the instance being refreshed, if any
    if refresh_state is not None:
        return _describe_column_load(refresh_state, read)
    return read or "an ORM attribute", "", "load it explicitly inside an awaited session call"


def _describe_column_load(
    refresh_state: InstanceState[Any], read: str | None
) -> tuple[str, str, str]:
    """`_describe_load` for column loads: a deferred column, or an expired object's refresh."""
    model = refresh_state.class_.__name__
    columns = refresh_state.mapper.column_attrs
    own = read.rpartition(".")[2] if read and read.startswith(f"{model}.") else None
    if own is not None and own in columns and columns[own].deferred:
        fix = (
            f"the column is deferred; load it in the query with "
            f"`.options(undefer({model}.{own}))`, or read it with "
            f"`await obj.awaitable_attrs.{own}`"
        )
        return f"{model}.{own}", "", fix
    # A refresh loads every expired column at once; deferred ones stay out of it.
    fetched = ", ".join(
        f"{model}.{name}"
        for name in sorted(refresh_state.expired_attributes)
        if name in columns and not columns[name].deferred
    )
    expired = "the attribute" if read is None or own is not None else f"the {model} it refers to"
    fix = (
        f"{expired} was expired (by a rollback, an explicit expire, or a server-side "
        "onupdate/default); `await session.refresh(obj)` before reading it, or set "
        "`__mapper_args__ = {'eager_defaults': True}` on the model"
    )
    if read is None:
        return fetched or model, "", fix
    return read, "" if fetched == read else fetched, fix


def _refuse_lazy_io(state: ORMExecuteState) -> None:
    if in_greenlet():
        return  # inside an awaited AsyncSession call: IO is allowed here
    attribute, fetches, fix = _describe_load(state)
    load = f"loading it (a refresh of {fetches})" if fetches else "loading it"
    error = LazyLoadError(
        f"{attribute} is not loaded, and {load} needs a database round trip, which attribute "
        f"access cannot await. Fix: {fix}."
    )
    # Kept for callers that only see a wrapped copy: pydantic turns an exception raised by an
    # attribute read into a validation error (see sessionwise.fastapi).
    state.session.info[_LAZY_LOAD_ERROR_KEY] = error
    raise error


def refused_lazy_load(session: AsyncSession) -> LazyLoadError | None:
    """The last `LazyLoadError` raised in *session*, even if a caller wrapped or swallowed it."""
    error = session.info.get(_LAZY_LOAD_ERROR_KEY)
    return error if isinstance(error, LazyLoadError) else None


def _refuse_writes(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.info.get(READ_ONLY_KEY):
        changed = [*session.new, *session.dirty, *session.deleted]
        names = sorted({type(obj).__name__ for obj in changed})
        raise ReadOnlySessionError(
            f"this session came from read_session() and cannot write (pending changes to "
            f"{', '.join(names)}); use db.session() for work that writes."
        )


_guarded_classes: dict[type[AsyncSession], type[AsyncSession]] = {}


def guarded_session_class(base: type[_S]) -> type[_S]:
    """A subclass of the async session class *base* with the guards installed (one per base)."""
    if base in _guarded_classes:
        return cast("type[_S]", _guarded_classes[base])
    sync_class: type[Session] = type(
        f"Guarded{base.sync_session_class.__name__}", (base.sync_session_class,), {}
    )
    event.listen(sync_class, "do_orm_execute", _refuse_lazy_io)
    event.listen(sync_class, "before_flush", _refuse_writes)
    namespace: dict[str, Any] = {"sync_session_class": sync_class, _OWNER: None, _CLOSER: None}
    for name in _IO_METHODS:
        method = getattr(base, name, None)
        if method is not None:
            namespace[name] = _guard(method)
    for name in _STREAM_METHODS:
        namespace[name] = _tracked_stream(namespace[name])
    guarded = type(f"Guarded{base.__name__}", (base,), namespace)
    _guarded_classes[base] = guarded
    return guarded
