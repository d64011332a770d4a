"""Bad input of every kind answers a 4xx problem that names the field; none reaches the database
as a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.taskyard.conftest import Actor

API = "/api/v1"
HUGE = 10**30
MIB = 1024 * 1024


@pytest.fixture
async def ids(api_client: httpx.AsyncClient, alice: Actor) -> dict[str, int]:
    project = (
        await api_client.post(f"{API}/projects", json={"name": "p"}, headers=alice.headers)
    ).json()
    worker = (
        await api_client.post(
            f"{API}/workers", json={"project_id": project["id"], "name": "w"}, headers=alice.headers
        )
    ).json()
    task = (
        await api_client.post(
            f"{API}/tasks", json={"project_id": project["id"], "title": "t"}, headers=alice.headers
        )
    ).json()
    return {"project": project["id"], "worker": worker["id"], "task": task["id"]}


def _problem(response: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    if field is not None:
        assert field in {error["field"] for error in body["errors"]}, body
        assert field in body["detail"]
    return body


# (method, path, json body, the field the answer must name); {p}/{w}/{t}: real ids
INVALID_BODIES = [
    ("POST", "/projects", {"name": ""}, "name"),
    ("POST", "/projects", {"name": "   "}, "name"),
    ("POST", "/projects", {"name": "x" * 201}, "name"),
    ("POST", "/projects", {"name": "a\x00b"}, "name"),
    ("POST", "/projects", {"name": "ok", "description": "\ud800"}, "description"),
    ("POST", "/projects", {"name": "ok", "description": "x" * 10_001}, "description"),
    ("POST", "/projects", {"name": "ok", "owner_id": 1}, "owner_id"),
    ("POST", "/projects", {"name": 5}, "name"),
    ("PATCH", "/projects/{p}", {"name": None}, "name"),
    ("PATCH", "/projects/{p}", {"id": 3}, "id"),
    ("POST", "/projects/{p}/members", {}, "body"),
    ("POST", "/projects/{p}/members", {"user_id": 1, "email": "a@b.io"}, "body"),
    ("POST", "/projects/{p}/members", {"user_id": HUGE}, "user_id"),
    ("POST", "/projects/{p}/members", {"email": "not-an-email"}, "email"),
    ("DELETE", "/projects/{p}/members", {"user_id": -1}, "user_id"),
    ("POST", "/workers", {"project_id": HUGE, "name": "w"}, "project_id"),
    ("POST", "/workers", {"project_id": "{p}", "name": "w", "secret": 1}, "secret"),
    ("POST", "/workers", {"project_id": 0, "name": "w"}, "project_id"),
    ("PATCH", "/workers/{w}", {}, "name"),
    ("POST", "/tasks", {"project_id": "{p}"}, "title"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "priority": 1001}, "priority"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "priority": -HUGE}, "priority"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "priority": 1.5}, "priority"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "priority": "high"}, "priority"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "status": "done"}, "status"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "assignee_id": HUGE}, "assignee_id"),
    ("POST", "/tasks", {"project_id": "{p}", "title": ["t"]}, "title"),
    ("PATCH", "/tasks/{t}", {"status": "finished"}, "status"),
    ("PATCH", "/tasks/{t}", {"title": None}, "title"),
    ("PATCH", "/tasks/{t}", {"version": 9}, "version"),
    ("POST", "/tasks/claim", {"worker_id": "{w}", "lease_seconds": 0}, "lease_seconds"),
    ("POST", "/tasks/claim", {"worker_id": "{w}", "lease_seconds": HUGE}, "lease_seconds"),
    ("POST", "/tasks/claim", {"lease_seconds": 5}, "worker_id"),
    ("POST", "/tasks/{t}/heartbeat", {"worker_id": HUGE}, "worker_id"),
    # Strict types: what the schema calls an integer must be one, not "12", true or 5.0.
    ("POST", "/workers", {"project_id": "12", "name": "w"}, "project_id"),
    ("POST", "/tasks", {"project_id": "{p}", "title": "t", "priority": True}, "priority"),
    ("PATCH", "/tasks/{t}", {"status": "done", "priority": False}, "priority"),
    ("POST", "/tasks/claim", {"worker_id": "{w}", "lease_seconds": 5.5}, "lease_seconds"),
    ("POST", "/tasks/claim", {"worker_id": "{w}", "project_id": None}, "project_id"),
    ("POST", "/projects/{p}/members", {"user_id": 2, "email": None}, "email"),
    ("POST", "/projects", {"name": "ok", "description": 7}, "description"),
]


def _fill(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        for name, key in (("{p}", "project"), ("{w}", "worker"), ("{t}", "task")):
            if value == name:
                return ids[key]
            value = value.replace(name, str(ids[key]))
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body", "field"), INVALID_BODIES)
async def test_invalid_bodies_are_422_naming_the_field(
    api_client: httpx.AsyncClient,
    alice: Actor,
    ids: dict[str, int],
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    # json.dumps escapes a lone surrogate as \ud800, as a hostile client would send it.
    response = await api_client.request(
        method,
        API + _fill(path, ids),
        content=json.dumps(_fill(body, ids)),
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    problem = _problem(response, 422, field)
    assert problem["type"] == "/problems/validation-error"


# Well-formed, but what they point at is missing or not visible: 404, still naming the field.
UNKNOWN_REFERENCES = [
    ("POST", "/projects/{p}/members", {"email": "nobody@nowhere.example"}, "email"),
    ("POST", "/projects/{p}/members", {"user_id": 2_000_000_000}, "user_id"),
    ("POST", "/workers", {"project_id": 2_000_000_000, "name": "w"}, "project_id"),
    ("POST", "/tasks", {"project_id": 2_000_000_000, "title": "t"}, "project_id"),
    (
        "POST",
        "/tasks",
        {"project_id": "{p}", "title": "t", "assignee_id": 2_000_000_000},
        "assignee_id",
    ),
    ("PATCH", "/tasks/{t}", {"assignee_id": 2_000_000_000}, "assignee_id"),
    ("POST", "/tasks/claim", {"worker_id": 2_000_000_000, "lease_seconds": 5}, "worker_id"),
    ("POST", "/tasks/claim", {"worker_id": "{w}", "project_id": 2_000_000_000}, "project_id"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), UNKNOWN_REFERENCES)
async def test_unknown_references_are_404_naming_the_field(
    api_client: httpx.AsyncClient,
    alice: Actor,
    ids: dict[str, int],
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    response = await api_client.request(
        method, API + _fill(path, ids), json=_fill(body, ids), headers=alice.headers
    )
    assert _problem(response, 404, field)["type"] == "/problems/not-found"


INVALID_QUERIES = [
    ("/tasks/99999999999999999999", "task_id"),
    ("/tasks/-1", "task_id"),
    ("/tasks/abc", "task_id"),
    ("/projects/2147483648", "project_id"),
    ("/workers/1e3", "worker_id"),
    ("/tasks?limit=0", "limit"),
    ("/tasks?limit=101", "limit"),
    ("/tasks?limit=99999999999999999999999", "limit"),
    ("/tasks?project_id=99999999999999999999", "project_id"),
    ("/tasks?status=nope", "status"),
    ("/tasks?assignee_id=-3", "assignee_id"),
    ("/workers?project_id=x", "project_id"),
    # A cursor too long is a 400 invalid-cursor like every other bad cursor
    # (tests/taskyard/test_openapi_contract.py).
]


@pytest.mark.parametrize(("path", "field"), INVALID_QUERIES)
async def test_invalid_paths_and_queries_are_422_naming_the_field(
    api_client: httpx.AsyncClient, alice: Actor, path: str, field: str
) -> None:
    _problem(await api_client.get(API + path, headers=alice.headers), 422, field)


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"name": "x",}',
        b"not json",
        b'{"name": "\\ud800',
        b"\xff\xfe{}",
        b"[]",
        b'"just a string"',
        b"null",
        b"",
    ],
)
async def test_malformed_or_wrongly_shaped_json_names_the_body(
    api_client: httpx.AsyncClient, alice: Actor, raw: bytes
) -> None:
    response = await api_client.post(
        f"{API}/projects",
        content=raw,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    _problem(response, response.status_code, "body")


async def test_odd_but_valid_unicode_round_trips(
    api_client: httpx.AsyncClient, alice: Actor, ids: dict[str, int]
) -> None:
    title = "Ünïcødé ✓ 🚀 עברית \u200b\t tab"
    response = await api_client.post(
        f"{API}/tasks",
        json={"project_id": ids["project"], "title": title, "description": "é" * 10_000},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    read = await api_client.get(f"{API}/tasks/{response.json()['id']}", headers=alice.headers)
    assert read.json()["title"] == title.strip()


async def test_bodies_over_one_mebibyte_are_413(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    big = json.dumps({"name": "p", "description": "x" * MIB}).encode()
    declared = await api_client.post(
        f"{API}/projects",
        content=big,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    _problem(declared, 413, None)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = await api_client.post(
        f"{API}/projects",
        content=chunks(),
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    _problem(streamed, 413, None)
    # Just under the limit, chunked, is read and validated as usual (here: too long a field).
    near = json.dumps({"name": "p", "description": "x" * (MIB - 100)}).encode()

    async def near_chunks() -> AsyncIterator[bytes]:
        yield near

    _problem(
        await api_client.post(
            f"{API}/projects",
            content=near_chunks(),
            headers={**alice.headers, "Content-Type": "application/json"},
        ),
        422,
        "description",
    )
    assert (await api_client.get(f"{API}/projects", headers=alice.headers)).json()["items"] == []


async def test_unknown_routes_and_methods_are_problems(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    _problem(await api_client.get(f"{API}/nowhere", headers=alice.headers), 404, None)
    not_allowed = await api_client.put(f"{API}/tasks/1", json={}, headers=alice.headers)
    _problem(not_allowed, 405, None)
    assert not_allowed.headers["allow"] == "DELETE, GET, PATCH"
    # Every method of a resource, not only those of the first route that matched.
    assert (await api_client.options(f"{API}/tasks", headers=alice.headers)).headers[
        "allow"
    ] == "GET, POST"
    # /tasks/claim is a resource of its own, not task "claim".
    claim = await api_client.patch(f"{API}/tasks/claim", json={}, headers=alice.headers)
    _problem(claim, 405, None)
    assert claim.headers["allow"] == "POST"
