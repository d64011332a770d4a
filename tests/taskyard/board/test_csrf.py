"""Every board request that changes something needs the session's CSRF token: 403 without.

Sign-in has one too (a signed nonce cookie and its token in the form), so that a foreign page
cannot sign a browser in to another account.
"""

from __future__ import annotations

import httpx
import pytest

from tests.taskyard.board.board_client import BOARD, csrf_of, sign_in
from tests.taskyard.conftest import Actor

API = "/api/v1"


@pytest.fixture
async def project_and_task(api_client: httpx.AsyncClient, alice: Actor) -> tuple[int, int, int]:
    project = await api_client.post(f"{API}/projects", json={"name": "p"}, headers=alice.headers)
    project_id = project.json()["id"]
    task = await api_client.post(
        f"{API}/tasks", json={"project_id": project_id, "title": "t"}, headers=alice.headers
    )
    return project_id, task.json()["id"], task.json()["version"]


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
async def test_changes_without_the_csrf_token_are_refused(
    api_client: httpx.AsyncClient,
    alice: Actor,
    project_and_task: tuple[int, int, int],
    token: str | None,
) -> None:
    project_id, task_id, version = project_and_task
    visitor = await sign_in(api_client, alice.api_key)
    extra = {} if token is None else {"csrf_token": token}
    attempts = [
        (f"/projects/{project_id}/tasks", {"title": "sneaky"}),
        (f"/tasks/{task_id}/move", {"version": version, "status": "done"}),
        (f"/tasks/{task_id}", {"version": version, "title": "sneaky", "status": "done"}),
        (f"/projects/{project_id}/workers", {"name": "sneaky"}),
        ("/sign-out", {}),
    ]
    for path, data in attempts:
        response = await visitor.post(path, {**data, **extra}, csrf=False)
        assert response.status_code == 403, path
        assert "did not come from the board" in response.text
    # Nothing changed, and the session is still open.
    tasks = await api_client.get(f"{API}/tasks?project_id={project_id}", headers=alice.headers)
    assert [(t["title"], t["status"], t["version"]) for t in tasks.json()["items"]] == [
        ("t", "pending", version)
    ]
    workers = await api_client.get(f"{API}/workers?project_id={project_id}", headers=alice.headers)
    assert workers.json()["items"] == []
    assert (await visitor.get("/projects")).status_code == 200


async def test_another_sessions_token_is_refused(
    api_client: httpx.AsyncClient, alice: Actor, project_and_task: tuple[int, int, int]
) -> None:
    project_id, _, _ = project_and_task
    first = await sign_in(api_client, alice.api_key)
    second = await sign_in(api_client, alice.api_key)
    assert first.csrf != second.csrf
    response = await first.post(f"/projects/{project_id}/tasks", {"title": "x"}, csrf=False)
    assert response.status_code == 403
    response = await first.post(
        f"/projects/{project_id}/tasks", {"title": "x", "csrf_token": second.csrf}, csrf=False
    )
    assert response.status_code == 403


async def test_sign_in_without_its_token_or_nonce_is_refused(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    form = await api_client.get(f"{BOARD}/sign-in")
    token = csrf_of(form.text)
    nonce = form.cookies["taskyard_board_sign_in"]
    api_client.cookies.clear()
    without_nonce = await api_client.post(
        f"{BOARD}/sign-in", data={"api_key": alice.api_key, "csrf_token": token}
    )
    without_token = await api_client.post(
        f"{BOARD}/sign-in",
        data={"api_key": alice.api_key},
        headers={"Cookie": f"taskyard_board_sign_in={nonce}"},
    )
    for response in (without_nonce, without_token):
        assert response.status_code == 403
        assert "taskyard_board=" not in response.headers.get("set-cookie", "")
        assert alice.api_key not in response.text
