"""Keyset pagination: every row exactly once, stable under inserts, cursors tamper-evident."""

from __future__ import annotations

import base64

import httpx
import pytest

from sessionwise import Database
from taskyard.errors import ProblemError
from taskyard.pagination import CursorCodec
from taskyard.tasks.models import Task
from tests.taskyard.conftest import Actor

API = "/api/v1"


async def _tasks(db: Database, project_id: int, count: int, prefix: str) -> None:
    async with db.session() as session:
        session.add_all(Task(project_id=project_id, title=f"{prefix}{n}") for n in range(count))


async def _project(client: httpx.AsyncClient, owner: Actor) -> int:
    response = await client.post(f"{API}/projects", json={"name": "p"}, headers=owner.headers)
    project_id: int = response.json()["id"]
    return project_id


async def test_pages_cover_every_task_once_even_with_inserts_between_pages(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    await _tasks(isolated_db, project_id, 25, "before-")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"project_id": project_id, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = (await api_client.get(f"{API}/tasks", params=params, headers=alice.headers)).json()
        seen += [task["title"] for task in page["items"]]
        pages += 1
        if pages == 2:  # new tasks arrive mid-way: they come after, nothing repeats or shifts
            await _tasks(isolated_db, project_id, 3, "during-")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"before-{n}" for n in range(25)] + [f"during-{n}" for n in range(3)]
    assert pages == 4


async def test_an_exact_last_page_has_no_next_cursor(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    await _tasks(isolated_db, project_id, 4, "t")
    first = (
        await api_client.get(
            f"{API}/tasks", params={"project_id": project_id, "limit": 2}, headers=alice.headers
        )
    ).json()
    second = (
        await api_client.get(
            f"{API}/tasks",
            params={"project_id": project_id, "limit": 2, "cursor": first["next_cursor"]},
            headers=alice.headers,
        )
    ).json()
    assert [len(first["items"]), len(second["items"])] == [2, 2]
    assert second["next_cursor"] is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_forged_and_foreign_cursors_are_400_naming_cursor(
    api_client: httpx.AsyncClient, isolated_db: Database, alice: Actor
) -> None:
    project_id = await _project(api_client, alice)
    await _tasks(isolated_db, project_id, 3, "t")
    genuine = (
        await api_client.get(f"{API}/tasks", params={"limit": 1}, headers=alice.headers)
    ).json()["next_cursor"]
    payload, mac = genuine.split(".")
    forged = [
        "",
        "garbage",
        "a.b.c",
        "!!!.???",
        f"{_b64(b'tasks:2')}.{mac}",  # edited payload, old signature
        f"{payload}.{_b64(b'0' * 16)}",  # right payload, made-up signature
        f"{_b64(b'tasks:1')}.{_b64(b'x')}",
        CursorCodec(b"another key").encode("tasks", 1),  # signed, but not by this service
        f"{payload}.{mac}x",
        genuine.upper(),
    ]
    for cursor in forged:
        response = await api_client.get(
            f"{API}/tasks", params={"cursor": cursor}, headers=alice.headers
        )
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["type"] == "/problems/invalid-cursor"
        assert response.json()["errors"] == [
            {"field": "cursor", "in": "query", "message": "invalid cursor"}
        ]
    # A genuine tasks cursor is refused by another listing.
    elsewhere = await api_client.get(
        f"{API}/workers", params={"cursor": genuine}, headers=alice.headers
    )
    assert elsewhere.status_code == 400
    assert (
        await api_client.get(f"{API}/tasks", params={"cursor": genuine}, headers=alice.headers)
    ).status_code == 200


@pytest.mark.parametrize("after", [0, -1, 2**31, 10**40])
def test_the_codec_refuses_ids_out_of_range_even_when_signed(after: int) -> None:
    codec = CursorCodec(b"k")
    with pytest.raises(ProblemError):
        codec.decode("tasks", codec.encode("tasks", after))


def test_the_codec_round_trips() -> None:
    codec = CursorCodec(b"k")
    assert codec.decode("tasks", codec.encode("tasks", 2**31 - 1)) == 2**31 - 1
