"""The board's pages without a browser: forms post and redirect, htmx gets fragments, stale
versions are conflicts shown with the new state, the poller gets 204 while nothing changed,
and columns page by keyset ("load more")."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.taskyard.board.board_client import Visitor, sign_in
from tests.taskyard.conftest import Actor

API = "/api/v1"
HTMX = {"HX-Request": "true"}


@pytest.fixture
async def project_id(api_client: httpx.AsyncClient, alice: Actor) -> int:
    response = await api_client.post(
        f"{API}/projects", json={"name": "launch"}, headers=alice.headers
    )
    return int(response.json()["id"])


@pytest.fixture
async def visitor(api_client: httpx.AsyncClient, alice: Actor) -> Visitor:
    return await sign_in(api_client, alice.api_key)


async def _task(client: httpx.AsyncClient, alice: Actor, project_id: int, title: str) -> dict:
    response = await client.post(
        f"{API}/tasks", json={"project_id": project_id, "title": title}, headers=alice.headers
    )
    assert response.status_code == 201
    return dict(response.json())


def _column(html: str, status: str) -> str:
    found = re.search(rf'<section class="column" id="column-{status}".*?</section>', html, re.S)
    assert found is not None, status
    return found.group(0)


async def test_create_a_task_with_and_without_htmx(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    plain = await visitor.post(f"/projects/{project_id}/tasks", {"title": "plain", "priority": "3"})
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/board/projects/{project_id}"
    fragment = await visitor.post(
        f"/projects/{project_id}/tasks", {"title": "partial"}, headers=HTMX
    )
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section id="board"')
    assert "partial" in _column(fragment.text, "pending")
    tasks = await api_client.get(f"{API}/tasks?project_id={project_id}", headers=alice.headers)
    assert [(t["title"], t["priority"]) for t in tasks.json()["items"]] == [
        ("plain", 3),
        ("partial", 0),
    ]


async def test_invalid_input_comes_back_in_the_form(visitor: Visitor, project_id: int) -> None:
    page = await visitor.post(f"/projects/{project_id}/tasks", {"title": "   ", "priority": "x"})
    assert page.status_code == 422
    assert "must be a whole number" in page.text
    fragment = await visitor.post(
        f"/projects/{project_id}/tasks", {"title": " ", "priority": "1"}, headers=HTMX
    )
    assert fragment.status_code == 422
    assert fragment.headers["HX-Retarget"] == "#new-task"
    assert fragment.text.lstrip().startswith('<section id="new-task"')
    assert 'aria-invalid="true"' in fragment.text


async def test_move_a_task_between_columns(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    task = await _task(api_client, alice, project_id, "ship it")
    moved = await visitor.post(
        f"/tasks/{task['id']}/move", {"version": task["version"], "status": "done"}, headers=HTMX
    )
    assert moved.status_code == 200
    assert "ship it" in _column(moved.text, "done")
    assert "ship it" not in _column(moved.text, "pending")
    now = await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    assert (now.json()["status"], now.json()["version"]) == ("done", task["version"] + 1)


async def test_a_stale_move_shows_the_new_state_and_changes_nothing(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    task = await _task(api_client, alice, project_id, "contested")
    # An agent changes the task after the board showed version 1.
    agent = await api_client.patch(
        f"{API}/tasks/{task['id']}", json={"status": "failed"}, headers=alice.headers
    )
    assert agent.status_code == 200
    for headers in (HTMX, None):
        stale = await visitor.post(
            f"/tasks/{task['id']}/move",
            {"version": task["version"], "status": "done"},
            headers=headers,
        )
        assert stale.status_code == 409
        assert "changed since you opened it" in stale.text
        assert re.search(r'class="state-status">Failed<', stale.text)
    now = await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    assert (now.json()["status"], now.json()["version"]) == ("failed", 2)


async def test_a_stale_edit_shows_the_new_state_and_keeps_what_was_typed(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    task = await _task(api_client, alice, project_id, "original")
    page = await visitor.get(f"/tasks/{task['id']}")
    assert 'name="version" value="1"' in page.text
    await api_client.patch(
        f"{API}/tasks/{task['id']}", json={"title": "renamed by agent"}, headers=alice.headers
    )
    form = {"version": 1, "title": "my edit", "status": "pending", "priority": "2"}
    stale = await visitor.post(f"/tasks/{task['id']}", form)
    assert stale.status_code == 409
    assert "changed since you opened it" in stale.text
    assert 'class="state-title">renamed by agent<' in stale.text
    assert 'value="my edit"' in stale.text
    assert 'name="version" value="2"' in stale.text
    now = await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    assert now.json()["title"] == "renamed by agent"
    # Saving again, knowingly, at the version shown, goes through.
    saved = await visitor.post(f"/tasks/{task['id']}", {**form, "version": 2})
    assert saved.status_code == 303
    now = await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    assert (now.json()["title"], now.json()["priority"], now.json()["version"]) == ("my edit", 2, 3)


async def test_the_poller_gets_204_until_something_changes(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    task = await _task(api_client, alice, project_id, "watched")
    first = await visitor.get(f"/projects/{project_id}/board", headers=HTMX)
    seen = re.search(r'name="seen" value="([0-9a-f]+)"', first.text)
    assert seen is not None
    unchanged = await visitor.get(f"/projects/{project_id}/board?seen={seen[1]}", headers=HTMX)
    assert unchanged.status_code == 204
    worker = await api_client.post(
        f"{API}/workers", json={"project_id": project_id, "name": "agent"}, headers=alice.headers
    )
    claim = {"worker_id": worker.json()["id"]}
    claimed = await api_client.post(f"{API}/tasks/claim", json=claim, headers=alice.headers)
    assert claimed.json()["id"] == task["id"]
    changed = await visitor.get(f"/projects/{project_id}/board?seen={seen[1]}", headers=HTMX)
    assert changed.status_code == 200
    assert "watched" in _column(changed.text, "in_progress")


async def test_columns_load_more_by_keyset(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    for number in range(23):
        await _task(api_client, alice, project_id, f"task {number:02}")
    board = await visitor.get(f"/projects/{project_id}")
    pending = _column(board.text, "pending")
    assert pending.count('class="card"') == 20
    assert "task 19" in pending
    assert "task 20" not in pending
    link = re.search(r'id="more-pending-link" href="([^"]+)"', pending)
    assert link is not None
    more_url = link[1].replace("&amp;", "&").removeprefix("/board")
    more = await visitor.get(more_url, headers=HTMX)
    assert more.text.count('class="card"') == 3
    assert "task 22" in more.text
    assert 'id="shown-pending" name="shown_pending" value="23" hx-swap-oob="true"' in more.text
    page = await visitor.get(more_url)  # without JavaScript: a page of the next cards
    assert page.status_code == 200
    assert "task 20" in page.text
    assert "Back to the board" in page.text
    # The next refresh keeps the cards that were loaded.
    refreshed = await visitor.get(f"/projects/{project_id}/board?shown_pending=23", headers=HTMX)
    assert _column(refreshed.text, "pending").count('class="card"') == 23
    forged = await visitor.get(f"/projects/{project_id}/columns/pending?cursor=abc.def")
    assert forged.status_code == 400


async def test_filters_pick_an_assignee_or_a_status(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    worker = await api_client.post(
        f"{API}/workers", json={"project_id": project_id, "name": "bot"}, headers=alice.headers
    )
    worker_id = worker.json()["id"]
    await api_client.post(
        f"{API}/tasks",
        json={"project_id": project_id, "title": "bots job", "assignee_id": worker_id},
        headers=alice.headers,
    )
    await _task(api_client, alice, project_id, "nobodys job")
    mine = await visitor.get(f"/projects/{project_id}?assignee={worker_id}")
    assert "bots job" in mine.text
    assert "nobodys job" not in mine.text
    done_only = await visitor.get(f"/projects/{project_id}?show=done")
    assert 'id="column-done"' in done_only.text
    assert 'id="column-pending"' not in done_only.text


async def test_members_and_workers(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    page = await visitor.get(f"/projects/{project_id}/people")
    assert page.status_code == 200
    assert alice.name in page.text
    assert "owner" in page.text
    added = await visitor.post(f"/projects/{project_id}/workers", {"name": "new agent"})
    assert added.status_code == 303
    page = await visitor.get(f"/projects/{project_id}/people")
    assert "new agent" in page.text
    refused = await visitor.post(f"/projects/{project_id}/workers", {"name": "  "})
    assert refused.status_code == 422


async def test_cards_offer_the_moves_the_lifecycle_allows_and_retry(
    api_client: httpx.AsyncClient, alice: Actor, visitor: Visitor, project_id: int
) -> None:
    task = await _task(api_client, alice, project_id, "flaky")
    board = await visitor.get(f"/projects/{project_id}")
    card = re.search(rf'<li class="card" id="task-{task["id"]}".*?</li>', board.text, re.S)
    assert card is not None
    buttons = re.findall(r'name="status" value="([a-z_]+)"', card[0])
    # The lifecycle's EDIT rows: a person may take a task in hand (in_progress) too.
    assert buttons == ["in_progress", "done", "failed", "cancelled"]
    # dead comes from failed attempts only: a crafted form asking for it is refused by the
    # lifecycle, and said so.
    refused = await visitor.post(
        f"/tasks/{task['id']}/move", {"version": 1, "status": "dead"}, headers=HTMX
    )
    assert refused.status_code == 409
    assert "was not changed" in refused.text
    failed = await visitor.post(f"/tasks/{task['id']}/move", {"version": 1, "status": "failed"})
    assert failed.status_code == 303
    board = await visitor.get(f"/projects/{project_id}")
    assert f'id="retry-{task["id"]}"' in _column(board.text, "failed")
    retried = await visitor.post(f"/tasks/{task['id']}/retry", {"version": 2}, headers=HTMX)
    assert retried.status_code == 200
    assert "flaky" in _column(retried.text, "pending")
    stale = await visitor.post(f"/tasks/{task['id']}/retry", {"version": 2}, headers=HTMX)
    assert stale.status_code == 409
    assert "changed since you opened it" in stale.text
