"""Security: API keys, what is stored and logged, and SQL built only with bound parameters.

Against the served app and its PostgreSQL database, with two users: the caller ("owner") and a
stranger whose data must never reach the caller, in any answer or log line.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import pytest

import taskyard
from tests.support.direct_sql import pg_fetch
from tests.support.served_app import ServedApp, run_cli
from tests.support.taskyard_api import create_project, create_task, create_worker

pytestmark = pytest.mark.faults

KEY_FORMAT = re.compile(r"ty_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]+)")
MIN_SECRET_BITS = 128
STRANGER_MARK = "stranger-only-7f3a"  # in every name the stranger gives their data


@pytest.fixture(scope="module")
def app(served_module: ServedApp) -> ServedApp:
    return served_module


def _secret(api_key: str) -> str:
    match = KEY_FORMAT.fullmatch(api_key)
    assert match, f"unexpected key format: {api_key[:6]}..."
    return match["secret"]


def _secret_bits(api_key: str) -> int:
    secret = _secret(api_key)
    decoded = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    return len(decoded) * 8


def _new_key(app: ServedApp, email: str) -> str:
    stdout = run_cli(
        "keys", "create", "--email", email, "--database-url", app.database_url, env=app.env
    )
    return stdout.strip().splitlines()[-1].strip()


async def test_api_keys_are_long_random_and_distinct(app: ServedApp) -> None:
    extra = _new_key(app, app.user.email)
    keys = [user.api_key for user in app.users] + [extra]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert _secret_bits(key) >= MIN_SECRET_BITS
    secrets = [_secret(key) for key in keys]
    assert len({secret[:8] for secret in secrets}) == len(secrets), "secrets share a prefix"
    # A fresh key works at once.
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
        response = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {extra}"}
        )
    assert response.status_code == 200, response.text


async def test_keys_are_stored_only_as_hashes(app: ServedApp) -> None:
    tables = await pg_fetch(
        app.database_url,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    dump = []
    for row in tables:
        name = row["table_name"]
        rows = await pg_fetch(app.database_url, f'SELECT row_to_json(t)::text AS j FROM "{name}" t')
        dump += [r["j"] for r in rows]
    everything = "\n".join(dump)
    assert "api_keys" in {row["table_name"] for row in tables}
    for user in app.users:
        secret = _secret(user.api_key)
        assert user.api_key not in everything
        assert secret not in everything


async def test_a_revoked_key_fails_at_once(app: ServedApp) -> None:
    key = _new_key(app, app.user.email)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
        run_cli("keys", "revoke", key, "--database-url", app.database_url, env=app.env)
        # The same keep-alive connection, right after the revocation committed: no cache.
        refused = await client.get("/api/v1/users/me", headers=headers)
        refused_write = await client.post("/api/v1/projects", json={"name": "x"}, headers=headers)
    for response in (refused, refused_write):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert key not in response.text


async def test_no_answer_or_log_line_leaks_another_users_data_or_a_key(app: ServedApp) -> None:
    owner, stranger = app.users[0], app.users[1]
    async with app.client(stranger, timeout=10) as theirs:
        their_project = await create_project(theirs, f"{STRANGER_MARK}-project")
        their_worker = await create_worker(theirs, their_project, f"{STRANGER_MARK}-worker")
        their_task = (await create_task(theirs, their_project, title=f"{STRANGER_MARK}-task"))["id"]
    forged = owner.api_key[:-4] + ("AAAA" if not owner.api_key.endswith("AAAA") else "BBBB")
    answers: list[httpx.Response] = []
    async with app.client(owner, timeout=10) as mine:
        my_project = await create_project(mine)
        requests = [
            ("GET", "/api/v1/projects", None, None),
            ("GET", "/api/v1/workers", None, None),
            ("GET", "/api/v1/tasks", None, None),
            ("GET", "/api/v1/users/me", None, None),
            ("GET", f"/api/v1/projects/{their_project}", None, None),
            ("GET", f"/api/v1/tasks/{their_task}", None, None),
            ("GET", f"/api/v1/workers/{their_worker}", None, None),
            ("GET", "/api/v1/tasks", {"project_id": their_project}, None),
            ("GET", "/api/v1/workers", {"project_id": their_project}, None),
            ("PATCH", f"/api/v1/tasks/{their_task}", None, {"title": "x"}),
            ("DELETE", f"/api/v1/projects/{their_project}", None, None),
            ("POST", "/api/v1/tasks/claim", None, {"worker_id": their_worker}),
            ("POST", f"/api/v1/tasks/{their_task}/heartbeat", None, {"worker_id": their_worker}),
            (
                "POST",
                "/api/v1/tasks",
                None,
                {"project_id": my_project, "title": "t", "assignee_id": their_worker},
            ),
            ("POST", f"/api/v1/projects/{their_project}/members", None, {"user_id": 1}),
        ]
        for method, path, params, body in requests:
            answers.append(await mine.request(method, path, params=params, json=body))
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as anonymous:
        for headers in (
            {"Authorization": f"Bearer {forged}"},
            {"Authorization": f"Basic {owner.api_key}"},
            {"Authorization": owner.api_key},
        ):
            answers.append(await anonymous.get("/api/v1/tasks", headers=headers))

    assert all(response.status_code < 500 for response in answers)
    for response in answers:
        text = response.text
        assert STRANGER_MARK not in text, f"{response.request.url}: {text}"
        assert stranger.email not in text, f"{response.request.url}: {text}"
        for key in (owner.api_key, stranger.api_key, forged):
            assert key not in text, f"{response.request.url} echoes a key"
            assert key not in str(response.headers)
    log = app.log()
    for key in (owner.api_key, stranger.api_key, forged):
        secret = _secret(key)
        assert secret not in log, "an API key reached the server log"


SQL_SHAPED = [
    "x'); DROP TABLE tasks;--",
    "'; DELETE FROM users WHERE '1'='1",
    "Robert'); DROP TABLE projects;--",
    "1 OR 1=1",
    '" OR ""="',
    "$1; SELECT pg_sleep(10)",
    "%s %(title)s {0} ?",
]


async def test_sql_shaped_input_is_stored_and_handled_literally(app: ServedApp) -> None:
    async with app.client(timeout=10) as client:
        project = await create_project(client, SQL_SHAPED[2])
        created = [(await create_task(client, project, title=title)) for title in SQL_SHAPED]
        for task, title in zip(created, SQL_SHAPED, strict=True):
            read = await client.get(f"/api/v1/tasks/{task['id']}")
            assert read.json()["title"] == title
        refused = [
            await client.get("/api/v1/tasks", params={"status": "pending' OR '1'='1"}),
            await client.get("/api/v1/tasks", params={"project_id": "1 OR 1=1"}),
            await client.get("/api/v1/tasks", params={"limit": "1; DROP TABLE tasks"}),
            await client.get("/api/v1/tasks", params={"cursor": "1' OR '1'='1"}),
            await client.get("/api/v1/tasks/1 OR 1=1"),
            await client.patch(
                f"/api/v1/tasks/{created[0]['id']}",
                json={"title": "y"},
                headers={"If-Match": "\"1\" OR '1'='1'"},
            ),
            await client.post(
                f"/api/v1/projects/{project}/members", json={"email": "a@b.c' OR 1=1 --"}
            ),
        ]
        listing = await client.get("/api/v1/tasks", params={"project_id": project, "limit": 100})
    for response in refused:
        assert 400 <= response.status_code < 500, response.text
    assert sorted(task["title"] for task in listing.json()["items"]) == sorted(SQL_SHAPED)
    rows = await pg_fetch(
        app.database_url, "SELECT title FROM tasks WHERE project_id = $1", project
    )
    assert sorted(row["title"] for row in rows) == sorted(SQL_SHAPED)
    tables = await pg_fetch(
        app.database_url,
        "SELECT count(*) AS n FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_name IN ('tasks', 'projects', 'users')",
    )
    assert tables[0]["n"] == 3
    users = await pg_fetch(app.database_url, "SELECT count(*) AS n FROM users")
    assert users[0]["n"] >= len(app.users)


def test_taskyard_builds_no_sql_from_formatted_strings() -> None:
    """Every statement is SQLAlchemy Core/ORM or text() with bound parameters: no SQL text is
    assembled with f-strings, %-formatting or .format() in the service's code."""
    source_root = Path(taskyard.__file__).parent
    formatted_sql = re.compile(
        r"""(text|exec_driver_sql|execute)\(\s*(f["']|["'][^"']*["']\s*(%|\.format\())"""
    )
    offenders = [
        f"{path.relative_to(source_root)}:{number}: {line.strip()}"
        for path in source_root.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if formatted_sql.search(line)
    ]
    assert not offenders, offenders
