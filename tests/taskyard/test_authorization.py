"""Every endpoint under /api/v1, tried with no key, a revoked key and an outsider's key.

No key or a revoked key: 401 with ``WWW-Authenticate: Bearer``. Another user's key on
anything of a project they are not a member of: 404, exactly like a missing id, and nothing of
the project in any answer (listings included). The outsider's attempts change nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sessionwise import Database
from taskyard.users.service import UserService
from tests.taskyard.conftest import Actor, create_actor

API = "/api/v1"


@dataclass(frozen=True)
class World:
    project_id: int
    worker_id: int
    task_id: int
    member: Actor  # alice's teammate, used for the "member" cases


async def _build(client: httpx.AsyncClient, db: Database, owner: Actor) -> World:
    project = (
        await client.post(f"{API}/projects", json={"name": "secret plans"}, headers=owner.headers)
    ).json()
    worker = (
        await client.post(
            f"{API}/workers", json={"project_id": project["id"], "name": "w"}, headers=owner.headers
        )
    ).json()
    task = (
        await client.post(
            f"{API}/tasks",
            json={"project_id": project["id"], "title": "classified", "assignee_id": worker["id"]},
            headers=owner.headers,
        )
    ).json()
    member = await create_actor(db, "carol")
    added = await client.post(
        f"{API}/projects/{project['id']}/members",
        json={"user_id": member.id},
        headers=owner.headers,
    )
    assert added.status_code == 201
    return World(project["id"], worker["id"], task["id"], member)


def _project_scoped(w: World, outsider: Actor) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every call that touches the world's project: (method, path, json body)."""
    p, wk, t = w.project_id, w.worker_id, w.task_id
    return [
        ("GET", f"/projects/{p}", None),
        ("PATCH", f"/projects/{p}", {"name": "mine now"}),
        ("DELETE", f"/projects/{p}", None),
        ("POST", f"/projects/{p}/members", {"user_id": outsider.id}),
        ("DELETE", f"/projects/{p}/members", {"user_id": w.member.id}),
        ("POST", "/workers", {"project_id": p, "name": "intruder"}),
        ("GET", f"/workers?project_id={p}", None),
        ("GET", f"/workers/{wk}", None),
        ("PATCH", f"/workers/{wk}", {"name": "renamed"}),
        ("DELETE", f"/workers/{wk}", None),
        ("POST", "/tasks", {"project_id": p, "title": "injected"}),
        ("GET", f"/tasks?project_id={p}", None),
        ("GET", f"/tasks/{t}", None),
        ("PATCH", f"/tasks/{t}", {"title": "defaced"}),
        ("DELETE", f"/tasks/{t}", None),
        ("POST", "/tasks/claim", {"worker_id": wk, "lease_seconds": 30}),
        ("POST", f"/tasks/{t}/heartbeat", {"worker_id": wk, "lease_seconds": 30}),
        ("POST", f"/tasks/{t}/complete", {"worker_id": wk, "result": {"stolen": True}}),
        ("POST", "/tasks/complete", {"worker_id": wk, "items": [{"id": t, "result": 1}]}),
        ("POST", f"/tasks/{t}/fail", {"worker_id": wk, "error": "sabotage"}),
        ("POST", f"/tasks/{t}/retry", None),
        ("GET", f"/tasks/{t}/attempts", None),
    ]


_UNSCOPED: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/projects", {"name": "p"}),
    ("GET", "/projects", None),
    ("GET", "/workers", None),
    ("GET", "/tasks", None),
    ("GET", "/users/me", None),
]


def test_the_matrix_covers_every_api_operation(sessionwise_app: Any) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in sessionwise_app.openapi()["paths"].items()
        if path.startswith(API)
        for method in operations
    }
    placeholder = World(1, 2, 3, Actor(9, "m@example.com", "m", "k"))
    tried = set()
    for method, path, _ in [*_project_scoped(placeholder, placeholder.member), *_UNSCOPED]:
        template = (
            path.split("?")[0]
            .replace("/projects/1", "/projects/{project_id}")
            .replace("/workers/2", "/workers/{worker_id}")
            .replace("/tasks/3", "/tasks/{task_id}")
        )
        tried.add((method, API + template))
    assert documented == tried


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None, key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return await client.request(method, API + path, json=body, headers=headers)


async def _snapshot(client: httpx.AsyncClient, owner: Actor, w: World) -> str:
    parts = [
        (await client.get(f"{API}/projects/{w.project_id}", headers=owner.headers)).json(),
        (
            await client.get(f"{API}/workers?project_id={w.project_id}", headers=owner.headers)
        ).json(),
        (await client.get(f"{API}/tasks?project_id={w.project_id}", headers=owner.headers)).json(),
    ]
    return json.dumps(parts, sort_keys=True)


async def test_no_key_and_revoked_key_are_401_everywhere(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor, bob: Actor
) -> None:
    world = await _build(api_client, isolated_db, alice)
    async with isolated_db.session() as session:
        await UserService(session).revoke_key(bob.api_key)
    garbage = ["", "ty_", "ty_0123456789ab_wrong", alice.api_key + "x", alice.api_key.upper()]
    for method, path, body in [*_project_scoped(world, bob), *_UNSCOPED]:
        for key in [None, bob.api_key, *garbage]:
            response = await _call(api_client, method, path, body, key)
            assert response.status_code == 401, (method, path, key, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "/problems/unauthorized"
            assert "classified" not in response.text
            assert "secret plans" not in response.text
    # A revoked key fails at once, while the user's other keys keep working.
    assert (await _call(api_client, "GET", "/users/me", None, alice.api_key)).status_code == 200


async def test_outsiders_get_404_exactly_like_missing_and_change_nothing(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor, bob: Actor
) -> None:
    world = await _build(api_client, isolated_db, alice)
    before = await _snapshot(api_client, alice, world)
    missing = World(2_000_000_000, 2_000_000_001, 2_000_000_002, world.member)
    for (method, path, body), (_, missing_path, missing_body) in zip(
        _project_scoped(world, bob), _project_scoped(missing, bob), strict=True
    ):
        response = await _call(api_client, method, path, body, bob.api_key)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "classified" not in response.text
        assert "secret plans" not in response.text
        # Same status and type as for ids that do not exist at all.
        absent = await _call(api_client, method, missing_path, missing_body, bob.api_key)
        assert absent.status_code == 404
        assert absent.json()["type"] == response.json()["type"] == "/problems/not-found"
    assert await _snapshot(api_client, alice, world) == before


async def test_listings_show_outsiders_nothing_of_the_project(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor, bob: Actor
) -> None:
    world = await _build(api_client, isolated_db, alice)
    for method, path, body in _UNSCOPED:
        response = await _call(api_client, method, path, body, bob.api_key)
        assert response.status_code in (200, 201), (path, response.text)
        assert "classified" not in response.text
        assert "secret plans" not in response.text
        if method == "GET" and "items" in response.json():
            # Bob's own project (created by the POST above) is all he sees.
            for item in response.json()["items"]:
                assert world.project_id not in (item["id"], item.get("project_id"))
    assert (await _call(api_client, "GET", "/users/me", None, bob.api_key)).json()["id"] == bob.id
    # Filtering by the project's id or its worker's id shows nothing either.
    by_assignee = await _call(
        api_client, "GET", f"/tasks?assignee_id={world.worker_id}", None, bob.api_key
    )
    assert by_assignee.json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/projects/{p}", {"name": "renamed"}),
        ("DELETE", "/projects/{p}", None),
        ("POST", "/projects/{p}/members", {"email": "nobody-new@example.com"}),
        ("DELETE", "/projects/{p}/members", {"user_id": "{owner}"}),
    ],
)
async def test_members_who_do_not_own_the_project_get_403_for_owner_actions(
    api_client: httpx.AsyncClient,
    isolated_db: Database,
    alice: Actor,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    world = await _build(api_client, isolated_db, alice)
    if body is not None and body.get("user_id") == "{owner}":
        body = {"user_id": alice.id}
    response = await _call(
        api_client, method, path.format(p=world.project_id), body, world.member.api_key
    )
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "/problems/forbidden"
    # Members do everything else: read the project, manage workers and tasks.
    assert (
        await _call(api_client, "GET", f"/projects/{world.project_id}", None, world.member.api_key)
    ).status_code == 200
