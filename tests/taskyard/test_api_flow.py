"""The whole story through the API: a project, a teammate, workers, tasks, a claim, the end."""

from __future__ import annotations

import httpx

from tests.taskyard.conftest import Actor

API = "/api/v1"


async def test_first_session_end_to_end(
    api_client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    me = await api_client.get(f"{API}/users/me", headers=alice.headers)
    assert me.json() == {"id": alice.id, "email": alice.email, "name": "alice"}

    created = await api_client.post(
        f"{API}/projects",
        json={"name": "Website", "description": "the relaunch"},
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["owner_id"] == alice.id
    assert project["members"] == [{"user_id": alice.id, "name": "alice", "role": "owner"}]
    project_id = project["id"]

    # A teammate joins by email and sees the project.
    joined = await api_client.post(
        f"{API}/projects/{project_id}/members",
        json={"email": bob.email.upper()},
        headers=alice.headers,
    )
    assert joined.status_code == 201, joined.text
    assert joined.json() == {"user_id": bob.id, "name": "bob", "role": "member"}
    listed = await api_client.get(f"{API}/projects", headers=bob.headers)
    assert [p["id"] for p in listed.json()["items"]] == [project_id]
    assert {m["user_id"] for m in listed.json()["items"][0]["members"]} == {alice.id, bob.id}

    worker = await api_client.post(
        f"{API}/workers", json={"project_id": project_id, "name": "builder-1"}, headers=bob.headers
    )
    assert worker.status_code == 201, worker.text
    worker_id = worker.json()["id"]

    titles = {"write copy": 0, "ship it": 5, "fix header": 5}
    task_ids = {}
    for title, priority in titles.items():
        response = await api_client.post(
            f"{API}/tasks",
            json={"project_id": project_id, "title": title, "priority": priority},
            headers=alice.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert body["version"] == 1
        assert body["project"] == {"id": project_id, "name": "Website"}
        assert body["assignee"] is None
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{API}/tasks/{body['id']}"
        shown = await api_client.get(response.headers["location"], headers=alice.headers)
        assert shown.json() == body
        task_ids[title] = body["id"]

    # Highest priority first; among equals the oldest: "ship it".
    claimed = await api_client.post(
        f"{API}/tasks/claim",
        json={"worker_id": worker_id, "lease_seconds": 60},
        headers=bob.headers,
    )
    assert claimed.status_code == 200, claimed.text
    task = claimed.json()
    assert task["id"] == task_ids["ship it"]
    assert task["status"] == "in_progress"
    assert task["assignee"] == {"id": worker_id, "name": "builder-1"}
    assert task["lease_expires_at"] is not None
    assert task["version"] == 2

    beat = await api_client.post(
        f"{API}/tasks/{task['id']}/heartbeat",
        json={"worker_id": worker_id, "lease_seconds": 120},
        headers=bob.headers,
    )
    assert beat.status_code == 200, beat.text
    assert beat.json()["lease_expires_at"] > task["lease_expires_at"]
    assert beat.json()["version"] == 3

    current = await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    assert current.headers["etag"] == '"3"'
    done = await api_client.patch(
        f"{API}/tasks/{task['id']}",
        json={"status": "done"},
        headers={**alice.headers, "If-Match": current.headers["etag"]},
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    assert done.json()["lease_expires_at"] is None
    assert done.json()["assignee"] == {"id": worker_id, "name": "builder-1"}
    assert done.headers["etag"] == '"4"'

    in_progress = await api_client.get(
        f"{API}/tasks", params={"project_id": project_id, "status": "pending"}, headers=bob.headers
    )
    assert [t["title"] for t in in_progress.json()["items"]] == ["write copy", "fix header"]
    assert in_progress.json()["next_cursor"] is None

    by_worker = await api_client.get(
        f"{API}/tasks", params={"assignee_id": worker_id}, headers=bob.headers
    )
    assert [t["id"] for t in by_worker.json()["items"]] == [task["id"]]

    # Reassign, rename, then unassign.
    other_worker = (
        await api_client.post(
            f"{API}/workers", json={"project_id": project_id, "name": "b2"}, headers=bob.headers
        )
    ).json()
    moved = await api_client.patch(
        f"{API}/tasks/{task_ids['write copy']}",
        json={"assignee_id": other_worker["id"]},
        headers=bob.headers,
    )
    assert moved.json()["assignee"] == {"id": other_worker["id"], "name": "b2"}
    renamed = await api_client.patch(
        f"{API}/workers/{other_worker['id']}", json={"name": "b3"}, headers=bob.headers
    )
    assert renamed.json()["name"] == "b3"
    reread = await api_client.get(f"{API}/tasks/{task_ids['write copy']}", headers=bob.headers)
    assert reread.json()["assignee"] == {"id": other_worker["id"], "name": "b3"}
    unassigned = await api_client.patch(
        f"{API}/tasks/{task_ids['write copy']}", json={"assignee_id": None}, headers=bob.headers
    )
    assert unassigned.json()["assignee"] is None

    # Deleting a worker unassigns its tasks; deleting a task needs the current version.
    assert (
        await api_client.delete(f"{API}/workers/{worker_id}", headers=alice.headers)
    ).status_code == 204
    assert (await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)).json()[
        "assignee"
    ] is None
    stale = await api_client.delete(
        f"{API}/tasks/{task['id']}", headers={**alice.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    etag = (await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)).headers[
        "etag"
    ]
    gone = await api_client.delete(
        f"{API}/tasks/{task['id']}", headers={**alice.headers, "If-Match": etag}
    )
    assert gone.status_code == 204
    assert (
        await api_client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    ).status_code == 404

    # Bob leaves; the project is no longer his to see.
    left = await api_client.request(
        "DELETE",
        f"{API}/projects/{project_id}/members",
        json={"user_id": bob.id},
        headers=bob.headers,
    )
    assert left.status_code == 204, left.text
    assert (
        await api_client.get(f"{API}/projects/{project_id}", headers=bob.headers)
    ).status_code == 404

    # The owner deletes the project; its tasks and workers go with it.
    assert (
        await api_client.delete(f"{API}/projects/{project_id}", headers=alice.headers)
    ).status_code == 204
    assert (
        await api_client.get(f"{API}/tasks/{task_ids['fix header']}", headers=alice.headers)
    ).status_code == 404
    assert (
        await api_client.get(f"{API}/workers/{other_worker['id']}", headers=alice.headers)
    ).status_code == 404
    assert (await api_client.get(f"{API}/projects", headers=alice.headers)).json()["items"] == []
