"""Work after the response under pool exhaustion: durable in the request, or logged (17.7).

A BackgroundTask writing an audit row after the response timed out on the pool under load:
302 orders, 296 audit rows, and nothing said which were lost. The documented pattern
(docs/background.md) writes the follow-up in the request's own transaction: nothing lost.
A BackgroundTask through `run_transaction` may still lose work, but each loss is one ERROR
record on logger ``sessionwise`` naming the work and what was rolled back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, func, select

from sessionwise import Database, Session
from sessionwise.fastapi import SessionDep, install_error_handlers

REQUESTS = 120
CONCURRENCY = 40


class LostWorkModel(SQLModel, registry=registry()):
    """Tables of this module, kept out of SQLModel.metadata that other code creates whole."""


class Order(LostWorkModel, table=True):
    __tablename__ = "lost_work_order"

    id: int | None = Field(default=None, primary_key=True)


class AuditEntry(LostWorkModel, table=True):
    __tablename__ = "lost_work_audit"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    # A small pool and a short wait: the load below exhausts it.
    async with Database(database_url, pool_size=2, pool_timeout=0.2) as database:
        async with database.engine.begin() as connection:
            await connection.run_sync(LostWorkModel.metadata.create_all)
        yield database


async def write_audit(order_id: int, session: Session) -> None:
    session.add(AuditEntry(order_id=order_id))


def build_app(db: Database) -> FastAPI:
    app = FastAPI()
    app.state.sessionwise_database = db
    install_error_handlers(app)  # what db.lifespan would do: no lifespan runs here

    @app.post("/orders/in-transaction", status_code=201)
    async def in_transaction(session: SessionDep) -> None:
        order = Order()
        session.add(order)
        await session.flush()
        assert order.id is not None
        await write_audit(order.id, session)  # committed with the order, or not at all
        await anyio.sleep(0.01)

    @app.post("/orders/background", status_code=201)
    async def in_background(session: SessionDep, tasks: BackgroundTasks) -> None:
        order = Order()
        session.add(order)
        await session.flush()
        assert order.id is not None
        await anyio.sleep(0.01)
        tasks.add_task(db.run_transaction, partial(write_audit, order.id), retries=0)

    return app


async def load(db: Database, path: str) -> Counter[int]:
    statuses: Counter[int] = Counter()
    limit = anyio.Semaphore(CONCURRENCY)
    # A background task's error reaches the ASGI server after the response; here the
    # transport keeps the response and drops the error (uvicorn would log it).
    transport = httpx.ASGITransport(app=build_app(db), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def one() -> None:
            async with limit:
                statuses[(await client.post(path)).status_code] += 1

        with anyio.fail_after(120):  # a safety net only
            async with anyio.create_task_group() as group:
                for _ in range(REQUESTS):
                    group.start_soon(one)
    return statuses


async def counts(db: Database) -> tuple[int, int]:
    async with db.read_session() as session:
        orders = (await session.exec(select(func.count()).select_from(Order))).one()
        audits = (await session.exec(select(func.count()).select_from(AuditEntry))).one()
    return orders, audits


async def test_follow_up_work_in_the_request_transaction_loses_nothing(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    statuses = await load(db, "/orders/in-transaction")
    orders, audits = await counts(db)
    assert statuses[201] == orders > 0
    assert set(statuses) <= {201, 503}  # the pool was short: some requests were refused
    assert audits == orders


async def test_background_work_lost_under_load_is_each_logged_at_error(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sessionwise")
    statuses = await load(db, "/orders/background")
    orders, audits = await counts(db)
    assert statuses[201] == orders > 0
    lost = [
        record
        for record in caplog.records
        if record.name == "sessionwise"
        and record.levelno == logging.ERROR
        and "gave up on write_audit" in record.getMessage()
    ]
    assert audits + len(lost) == orders
    for record in lost:
        assert "rolled back: 1 new AuditEntry" in record.getMessage()
        assert "TimeoutError" in record.getMessage()


async def test_the_loss_record_names_the_cause_without_sql_or_values(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sessionwise")
    secret = 987654321

    async def duplicate_order(session: Session) -> None:
        session.add(Order(id=secret))
        await session.flush()
        session.add(AuditEntry(order_id=secret))
        session.add(Order(id=secret))  # the same primary key: refused at the flush

    async with db.session() as session:
        session.add(Order(id=secret))
    with pytest.raises(Exception, match=r"UNIQUE|duplicate"):
        await db.run_transaction(duplicate_order, retries=0)
    (record,) = [r for r in caplog.records if "gave up on" in r.getMessage()]
    message = record.getMessage()
    assert "IntegrityError" in message
    assert "SQLSTATE 23505" in message or "SQLITE_CONSTRAINT" in message
    assert str(secret) not in message
    assert "INSERT" not in message
