"""sessionwise.idempotency: key syntax, fingerprints, and the store on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData

from sessionwise import Database
from sessionwise.idempotency import (
    MAX_KEY_LENGTH,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    IdempotencyStore,
    InvalidIdempotencyKeyError,
    KeyedRequest,
    StoredAnswer,
    idempotency_table,
    parse_idempotency_key,
    request_fingerprint,
)

ANSWER = StoredAnswer(201, b'{"id":1}', {"content-type": "application/json", "ETag": '"1"'})


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ('"abc"', "abc"),
        ('  "8e03978e-40d5-43e8-bc93-6894a57f9324" ', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"with \\"quotes\\" and \\\\"', 'with "quotes" and \\'),
        ('" spaces ~!#$%&\'()*+,-./:;<=>?@[]^_`{|} "', " spaces ~!#$%&'()*+,-./:;<=>?@[]^_`{|} "),
        ('"' + "x" * MAX_KEY_LENGTH + '"', "x" * MAX_KEY_LENGTH),
    ],
)
def test_keys_are_sf_strings(value: str, key: str) -> None:
    assert parse_idempotency_key(value) == key


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        '""',
        '"' + "x" * (MAX_KEY_LENGTH + 1) + '"',
        '"open',
        '"a\\x"',
        '"a\\"',
        '"a" "b"',
        '"a";p=1',
        '"tab\t"',
        '"caf\xe9"',
        '"\x7f"',
        '\t"a"',
        ":YWJj:",  # an sf-binary, not an sf-string
        "12",
    ],
)
def test_anything_else_is_refused_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidIdempotencyKeyError, match=r"^Idempotency-Key: "):
        parse_idempotency_key(value)


def test_fingerprints_cover_method_target_and_body() -> None:
    base = request_fingerprint("POST", "/tasks", b'{"a":1}')
    assert base == request_fingerprint("post", "/tasks", b'{"a":1}')
    assert len(base) == 64
    others = {
        request_fingerprint("PUT", "/tasks", b'{"a":1}'),
        request_fingerprint("POST", "/tasks/claim", b'{"a":1}'),
        request_fingerprint("POST", "/tasks", b'{"a": 1}'),
        request_fingerprint("POST", "/tasks?x=1", b'{"a":1}'),
        # Length prefixes: moving bytes between parts changes the fingerprint.
        request_fingerprint("POST", "/tasks{", b'"a":1}'),
    }
    assert base not in others
    assert len(others) == 5


def test_the_table_follows_the_metadata_naming_convention() -> None:
    metadata = MetaData(
        naming_convention={"pk": "pk_%(table_name)s", "ix": "ix_%(column_0_label)s"}
    )
    table = idempotency_table(metadata, "my_keys")
    assert metadata.tables["my_keys"] is table
    assert [c.name for c in table.primary_key.columns] == ["scope", "key"]
    assert table.primary_key.name == "pk_my_keys"
    assert {index.name for index in table.indexes} == {"ix_my_keys_expires_at"}


@pytest.fixture
async def store_db(database_url: str) -> AsyncIterator[tuple[Database, IdempotencyStore]]:
    metadata = MetaData()
    store = IdempotencyStore(idempotency_table(metadata))
    async with Database(database_url) as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield db, store


async def test_save_then_lookup_replays_and_a_different_request_is_refused(
    store_db: tuple[Database, IdempotencyStore],
) -> None:
    db, store = store_db
    request = KeyedRequest("user-1", "k", "f" * 64)
    async with db.session() as session:
        assert await store.lookup(session, request) is None
        await store.save(session, request, ANSWER)
    async with db.session() as session:
        assert await store.lookup(session, request) == ANSWER
        with pytest.raises(IdempotencyKeyReusedError, match="different request"):
            await store.lookup(session, KeyedRequest("user-1", "k", "0" * 64))
        # Another scope, the same key string: unknown there.
        assert await store.lookup(session, KeyedRequest("user-2", "k", "0" * 64)) is None


async def test_a_rolled_back_transaction_leaves_no_record(
    store_db: tuple[Database, IdempotencyStore],
) -> None:
    db, store = store_db
    request = KeyedRequest("s", "k", "f")
    with pytest.raises(RuntimeError):  # noqa: PT012  (the failure must come inside the session)
        async with db.session() as session:
            await store.save(session, request, ANSWER)
            raise RuntimeError("the effect failed")
    async with db.session() as session:
        assert await store.lookup(session, request) is None


async def test_an_expired_record_is_absent_and_replaced(
    store_db: tuple[Database, IdempotencyStore],
) -> None:
    db, store = store_db
    request = KeyedRequest("s", "k", "old")
    long_ago = datetime.now(UTC) - timedelta(days=2)
    async with db.session() as session:
        await store.save(session, request, ANSWER, now=long_ago)
    fresh = KeyedRequest("s", "k", "new")
    new_answer = StoredAnswer(200, b"new", {})
    async with db.session() as session:
        assert await store.lookup(session, fresh) is None  # not a 422: the old one expired
        await store.save(session, fresh, new_answer)
    async with db.session() as session:
        assert await store.lookup(session, fresh) == new_answer
    assert await store.purge(db) == 0  # replaced, so nothing expired is left


async def test_a_save_after_another_request_won_is_refused(
    store_db: tuple[Database, IdempotencyStore],
) -> None:
    db, store = store_db
    request = KeyedRequest("s", "k", "f")
    async with db.session() as session:
        await store.save(session, request, ANSWER)
    with pytest.raises(IdempotencyKeyInUseError, match="completed meanwhile"):
        async with db.session() as session:
            await store.save(session, request, StoredAnswer(201, b"second", {}))
    async with db.session() as session:
        assert await store.lookup(session, request) == ANSWER


async def test_postgres_a_running_request_holds_its_key(postgres_url: str) -> None:
    metadata = MetaData()
    store = IdempotencyStore(idempotency_table(metadata))
    async with Database(postgres_url) as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        request = KeyedRequest("s", "k", "f")

        async def another_request() -> None:
            async with db.session() as second:
                with pytest.raises(IdempotencyKeyInUseError, match="still being processed"):
                    await store.lookup(second, request)
                # Another user's equal key is not held.
                assert await store.lookup(second, KeyedRequest("other", "k", "f")) is None

        async with db.session() as first:
            assert await store.lookup(first, request) is None
            # In a task of its own, as a concurrent request is: a second write session in the
            # same task is a NestedSessionError.
            await asyncio.create_task(another_request())
            await store.save(first, request, ANSWER)
        async with db.session() as third:
            assert await store.lookup(third, request) == ANSWER


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        IdempotencyStore(idempotency_table(MetaData()), retention=timedelta(0))
