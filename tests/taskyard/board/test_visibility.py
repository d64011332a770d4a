"""The API's rules on the board: only members see a project (others get the same 404 as for
a missing one), every user text is escaped, and the API key never appears in an answer."""

from __future__ import annotations

import httpx

from tests.taskyard.board.board_client import BOARD, sign_in, sign_in_response
from tests.taskyard.conftest import Actor

API = "/api/v1"
HOSTILE = "<img src=x onerror=alert(1)>"


async def _alices_project(client: httpx.AsyncClient, alice: Actor) -> tuple[int, int, int, int]:
    project = await client.post(
        f"{API}/projects", json={"name": "alice's secret plans"}, headers=alice.headers
    )
    project_id = project.json()["id"]
    worker = await client.post(
        f"{API}/workers", json={"project_id": project_id, "name": "w"}, headers=alice.headers
    )
    task = await client.post(
        f"{API}/tasks",
        json={"project_id": project_id, "title": "classified"},
        headers=alice.headers,
    )
    return project_id, worker.json()["id"], task.json()["id"], task.json()["version"]


async def test_a_non_members_project_is_not_found(
    api_client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    project_id, _, task_id, version = await _alices_project(api_client, alice)
    bob_visitor = await sign_in(api_client, bob.api_key)
    pages = [
        f"/projects/{project_id}",
        f"/projects/{project_id}/board",
        f"/projects/{project_id}/columns/pending",
        f"/projects/{project_id}/people",
        f"/tasks/{task_id}",
    ]
    missing = await bob_visitor.get("/projects/999999")
    assert missing.status_code == 404
    for path in pages:
        response = await bob_visitor.get(path)
        assert response.status_code == 404, path
        assert "secret plans" not in response.text
        assert "classified" not in response.text
    changes = [
        (f"/projects/{project_id}/tasks", {"title": "intrusion"}),
        (f"/tasks/{task_id}/move", {"version": version, "status": "done"}),
        (f"/tasks/{task_id}", {"version": version, "title": "intrusion", "status": "done"}),
        (f"/projects/{project_id}/workers", {"name": "intrusion"}),
    ]
    for path, data in changes:
        response = await bob_visitor.post(path, data)
        assert response.status_code == 404, path
    projects = await bob_visitor.get("/projects")
    assert "secret plans" not in projects.text
    # Nothing of it changed.
    task = await api_client.get(f"{API}/tasks/{task_id}", headers=alice.headers)
    assert (task.json()["title"], task.json()["version"]) == ("classified", version)
    workers = await api_client.get(f"{API}/workers?project_id={project_id}", headers=alice.headers)
    assert [worker["name"] for worker in workers.json()["items"]] == ["w"]


async def test_every_user_text_is_escaped(api_client: httpx.AsyncClient, alice: Actor) -> None:
    project = await api_client.post(
        f"{API}/projects",
        json={"name": "<script>alert('p')</script>", "description": '"><b>d</b>'},
        headers=alice.headers,
    )
    project_id = project.json()["id"]
    worker = await api_client.post(
        f"{API}/workers",
        json={"project_id": project_id, "name": "<svg onload=alert(2)>"},
        headers=alice.headers,
    )
    task = await api_client.post(
        f"{API}/tasks",
        json={
            "project_id": project_id,
            "title": HOSTILE,
            "description": "</textarea><script>alert(3)</script>",
            "assignee_id": worker.json()["id"],
        },
        headers=alice.headers,
    )
    visitor = await sign_in(api_client, alice.api_key)
    for path in (
        "/projects",
        f"/projects/{project_id}",
        f"/projects/{project_id}/board",
        f"/projects/{project_id}/people",
        f"/tasks/{task.json()['id']}",
    ):
        html = (await visitor.get(path)).text
        for raw in (
            "<script>alert",
            "<img src=x",
            "<svg onload",
            "<b>d</b>",
            "</textarea><script>",
        ):
            assert raw not in html, (path, raw)
    board = (await visitor.get(f"/projects/{project_id}")).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in board
    assert "&lt;svg onload=alert(2)&gt;" in board
    # In attributes too (the move buttons' labels quote the title).
    assert 'aria-label="Move “&lt;img src=x onerror=alert(1)&gt;” to' in board


async def test_the_api_key_appears_in_no_answer(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    project_id, _, task_id, version = await _alices_project(api_client, alice)
    signed_in = await sign_in_response(api_client, alice.api_key)
    bodies = [signed_in.text, *signed_in.headers.values()]
    visitor = await sign_in(api_client, alice.api_key)
    for path in (
        "/sign-in",
        "/projects",
        f"/projects/{project_id}",
        f"/projects/{project_id}/board",
        f"/projects/{project_id}/people",
        f"/tasks/{task_id}",
        "/projects/999999",
    ):
        response = await visitor.get(path)
        bodies += [response.text, *response.headers.values()]
    moved = await visitor.post(f"/tasks/{task_id}/move", {"version": version, "status": "done"})
    stale = await visitor.post(f"/tasks/{task_id}/move", {"version": version, "status": "failed"})
    assert stale.status_code == 409
    bodies += [moved.text, stale.text, *moved.headers.values(), *stale.headers.values()]
    key_id = alice.api_key.split("_")[1]
    secret = alice.api_key.split("_", 2)[2]
    for body in bodies:
        assert alice.api_key not in body
        assert secret not in body
        assert key_id not in body


async def test_the_board_is_not_in_the_api_schema(api_client: httpx.AsyncClient) -> None:
    paths = (await api_client.get("/openapi.json")).json()["paths"]
    assert paths
    assert not [path for path in paths if path.startswith(BOARD)]
    assert (await api_client.get(f"{BOARD}/openapi.json")).status_code in (303, 404)
