"""Membership rules: the owner manages members; members may leave; the owner stays."""

from __future__ import annotations

import httpx

from sessionwise import Database
from tests.taskyard.conftest import Actor, create_actor

API = "/api/v1"


async def test_membership_rules(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor, bob: Actor
) -> None:
    carol = await create_actor(isolated_db, "carol")
    project = (
        await api_client.post(f"{API}/projects", json={"name": "p"}, headers=alice.headers)
    ).json()
    members = f"{API}/projects/{project['id']}/members"

    assert (
        await api_client.post(members, json={"user_id": bob.id}, headers=alice.headers)
    ).status_code == 201
    again = await api_client.post(members, json={"email": bob.email}, headers=alice.headers)
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/conflict"
    assert (
        await api_client.post(members, json={"user_id": carol.id}, headers=alice.headers)
    ).status_code == 201

    # Bob may not remove Carol, nor the owner; he may leave.
    assert (
        await api_client.request("DELETE", members, json={"user_id": carol.id}, headers=bob.headers)
    ).status_code == 403
    owner_out = await api_client.request(
        "DELETE", members, json={"user_id": alice.id}, headers=alice.headers
    )
    assert owner_out.status_code == 409
    assert (
        await api_client.request("DELETE", members, json={"user_id": bob.id}, headers=bob.headers)
    ).status_code == 204
    # Alice removes Carol; removing a non-member is a 404.
    assert (
        await api_client.request(
            "DELETE", members, json={"email": carol.email}, headers=alice.headers
        )
    ).status_code == 204
    gone = await api_client.request(
        "DELETE", members, json={"user_id": carol.id}, headers=alice.headers
    )
    assert gone.status_code == 404

    read = (await api_client.get(f"{API}/projects/{project['id']}", headers=alice.headers)).json()
    assert read["members"] == [{"user_id": alice.id, "name": "alice", "role": "owner"}]
    for outsider in (bob, carol):
        assert (
            await api_client.get(f"{API}/projects/{project['id']}", headers=outsider.headers)
        ).status_code == 404


async def test_owner_updates_the_project(api_client: httpx.AsyncClient, alice: Actor) -> None:
    created = (
        await api_client.post(f"{API}/projects", json={"name": "p"}, headers=alice.headers)
    ).json()
    renamed = await api_client.patch(
        f"{API}/projects/{created['id']}", json={"description": "new words"}, headers=alice.headers
    )
    assert renamed.status_code == 200
    body = renamed.json()
    assert (body["name"], body["description"]) == ("p", "new words")
    assert body["updated_at"] > created["updated_at"]
    assert created["created_at"] == created["updated_at"]
