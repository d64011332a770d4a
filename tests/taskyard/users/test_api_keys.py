"""API keys: random, shown once, stored only as a hash, revocable at once, never echoed."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import text
from sqlmodel import select

from sessionwise import Database
from taskyard.users.models import ApiKey
from taskyard.users.service import UserService, parse_api_key
from tests.taskyard.conftest import Actor, create_actor

API = "/api/v1"


async def test_keys_are_random_and_stored_only_as_hashes(isolated_db: Database) -> None:
    actors = [await create_actor(isolated_db, f"u{n}") for n in range(5)]
    keys = [actor.api_key for actor in actors]
    assert len(set(keys)) == len(keys)
    for key in keys:
        prefix, key_id, secret = key[:3], key[3:15], key[16:]
        assert prefix == "ty_"
        assert parse_api_key(key) == key_id
        assert len(secret) >= 43  # token_urlsafe(32): 256 random bits
    async with isolated_db.read_session() as session:
        stored = list(await session.exec(select(ApiKey)))
        dump = " ".join(
            str(value)
            for row in await session.exec(text("SELECT * FROM api_keys"))  # type: ignore[call-overload]
            for value in row
        )
    for key in keys:
        assert key not in dump
        assert key[16:] not in dump  # not even the secret part
    assert {row.key_hash for row in stored} >= {
        hashlib.sha256(k.encode()).hexdigest() for k in keys
    }


async def test_revocation_takes_effect_on_the_next_request(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    assert (await api_client.get(f"{API}/users/me", headers=alice.headers)).status_code == 200
    async with isolated_db.session() as session:
        await UserService(session).revoke_key(alice.api_key[:15])
    revoked = await api_client.get(f"{API}/users/me", headers=alice.headers)
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_no_answer_contains_a_key_or_its_hash(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    digest = hashlib.sha256(alice.api_key.encode()).hexdigest()
    project = await api_client.post(f"{API}/projects", json={"name": "p"}, headers=alice.headers)
    answers = [
        project,
        await api_client.get(f"{API}/users/me", headers=alice.headers),
        await api_client.get(f"{API}/projects", headers=alice.headers),
        await api_client.get(f"{API}/nowhere", headers=alice.headers),
        await api_client.get(
            f"{API}/users/me", headers={"Authorization": f"Bearer {alice.api_key}x"}
        ),
        await api_client.post(
            f"{API}/projects", json={"name": alice.api_key * 4}, headers=alice.headers
        ),
        await api_client.post(f"{API}/projects", content=alice.api_key, headers=alice.headers),
    ]
    for answer in answers:
        assert alice.api_key not in answer.text
        assert digest not in answer.text
        assert alice.api_key not in str(answer.headers)
