"""A client generated from the served document runs the README's first session (issue 16).

openapi-python-client (pinned in the dev group) generates ``taskyard_client`` from
``/openapi.json`` of a served taskyard into a temporary directory, at test time: nothing
generated is committed, so nothing can be stale or hand-edited. Its functions are named by
the operation ids (``tasks_create_task``), its models by the schemas, and every answer must
be one the document declares (``raise_on_unexpected_status``). The session is the one of
README.md's "A first session" (tests/test_readme_session.py runs it with curl), step by step.
The agent loop of docs/clients.md then runs, as written on the page, with the same client.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.served_app import ServedApp, create_user_with_cli, serve_taskyard

ROOT = Path(__file__).resolve().parents[1]
CLIENTS_PAGE = ROOT / "docs" / "clients.md"
GENERATOR_CONFIG = ROOT / "clients" / "openapi-python-client.yaml"
PACKAGE = "taskyard_client"


def generate_client(document_url: str, into: Path) -> Path:
    """``openapi-python-client generate`` for *document_url*; the package's parent directory."""
    document = into / "openapi.json"
    document.write_bytes(httpx.get(document_url, timeout=10).content)
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--config",
            str(GENERATOR_CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(into / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # Its post-hooks run ruff, the environment's own.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Warnings mean a part of the document it could not turn into code.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    return into


@pytest.fixture(scope="module")
def served_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    directory = tmp_path_factory.mktemp("served")
    database_url = f"sqlite+aiosqlite:///{directory / 'taskyard.db'}"
    with serve_taskyard(database_url, directory, users=[]) as app:
        yield app


@pytest.fixture(scope="module")
def client_package(
    served_sqlite: ServedApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    """The generated package, imported; forgotten again afterwards."""
    parent = generate_client(
        f"{served_sqlite.base_url}/openapi.json", tmp_path_factory.mktemp("client")
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(parent))
        try:
            yield importlib.import_module(PACKAGE)
        finally:
            for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
                del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_runs_the_readme_first_session(
    served_sqlite: ServedApp, client_package: ModuleType
) -> None:
    create_project = _module("api.projects.projects_create_project")
    list_projects = _module("api.projects.projects_list_projects")
    create_worker = _module("api.workers.workers_create_worker")
    create_task = _module("api.tasks.tasks_create_task")
    claim_task = _module("api.tasks.tasks_claim_task")
    list_tasks = _module("api.tasks.tasks_list_tasks")
    update_task = _module("api.tasks.tasks_update_task")
    complete_task = _module("api.tasks.tasks_complete_task")
    fail_task = _module("api.tasks.tasks_fail_task")
    list_attempts = _module("api.tasks.tasks_list_attempts")
    models = _module("models")

    # a user and an API key: made with the CLI, as in the README
    user = create_user_with_cli(served_sqlite.database_url, "ada", env=served_sqlite.env)
    client = client_package.AuthenticatedClient(
        base_url=served_sqlite.base_url, token=user.api_key, raise_on_unexpected_status=True
    )
    with client:
        project = create_project.sync(
            client=client, body=models.ProjectCreate(name="Website relaunch")
        )
        assert isinstance(project, models.ProjectRead), project
        assert (project.name, project.owner_id) == ("Website relaunch", project.members[0].user_id)
        assert project.members[0].role == models.Role.OWNER

        worker = create_worker.sync(
            client=client, body=models.WorkerCreate(project_id=project.id, name="build-agent")
        )
        assert isinstance(worker, models.WorkerRead), worker
        assert worker.project_id == project.id

        copy = create_task.sync(
            client=client,
            body=models.TaskCreate(project_id=project.id, title="Write the landing page copy"),
        )
        assert isinstance(copy, models.TaskRead), copy
        assert (copy.status, copy.priority, copy.version) == (models.TaskStatus.PENDING, 0, 1)
        assert copy.assignee is None
        assert copy.project.name == "Website relaunch"

        header = create_task.sync(
            client=client,
            body=models.TaskCreate(
                project_id=project.id, title="Fix the broken header", priority=5
            ),
        )
        assert isinstance(header, models.TaskRead)
        assert header.priority == 5

        # an agent that may retry sends each create with its own key; same again: same answer
        notes = models.TaskCreate(project_id=project.id, title="Draft the release notes")
        key = '"5b0e6c2a-release-notes"'
        first = create_task.sync_detailed(client=client, body=notes, idempotency_key=key)
        again = create_task.sync_detailed(client=client, body=notes, idempotency_key=key)
        assert (first.status_code, again.status_code) == (201, 201)
        assert "idempotency-replayed" not in first.headers
        assert again.headers["idempotency-replayed"] == "true"
        assert again.parsed.id == first.parsed.id
        assert again.parsed.title == notes.title

        # the worker claims the highest-priority pending task, with a 5-minute lease
        claimed = claim_task.sync_detailed(
            client=client, body=models.ClaimRequest(worker_id=worker.id, lease_seconds=300)
        )
        assert claimed.status_code == 200
        task = claimed.parsed
        assert isinstance(task, models.TaskRead)
        assert (task.id, task.status, task.version) == (header.id, models.TaskStatus.IN_PROGRESS, 2)
        assert task.assignee.name == "build-agent"
        assert task.lease_expires_at is not None
        assert claimed.headers["etag"] == '"2"'

        pending = list_tasks.sync(
            client=client, project_id=project.id, status=models.TaskStatus.PENDING
        )
        assert isinstance(pending, models.PageTaskRead)
        assert [item.id for item in pending.items] == [copy.id, first.parsed.id]
        assert pending.next_cursor is None

        # finish it, only if nobody changed it since version 2
        done = update_task.sync_detailed(
            client=client,
            task_id=task.id,
            body=models.TaskUpdate(status=models.TaskStatus.DONE),
            if_match='"2"',
        )
        assert done.status_code == 200
        assert done.headers["etag"] == '"3"'
        assert (done.parsed.status, done.parsed.version) == (models.TaskStatus.DONE, 3)

        stale = update_task.sync_detailed(
            client=client,
            task_id=task.id,
            body=models.TaskUpdate(title="stale edit"),
            if_match='"2"',
        )
        assert stale.status_code == 412
        assert stale.headers["content-type"] == "application/problem+json"
        assert isinstance(stale.parsed, models.Problem)
        assert stale.parsed.type_ == "/problems/precondition-failed"
        assert stale.parsed.detail == 'If-Match does not match the current version "3"'

        # an agent's task carries its input as JSON: the payload
        payload = {"url": "https://example.com/CHANGELOG.md", "words": 100}
        summary = create_task.sync(
            client=client,
            body=models.TaskCreate(
                project_id=project.id, title="Summarize the changelog", priority=9, payload=payload
            ),
        )
        assert isinstance(summary, models.TaskRead)
        assert (summary.payload, summary.result) == (payload, None)
        assert (summary.attempts, summary.max_attempts) == (0, 3)

        # the agent loop: claim up to 10 tasks at once (best first, each with its own lease)
        batch = claim_task.sync(
            client=client,
            body=models.ClaimRequest(worker_id=worker.id, lease_seconds=300, limit=10),
        )
        assert isinstance(batch, models.ClaimedTasks), batch
        assert [item.id for item in batch.items] == [summary.id, copy.id, first.parsed.id]
        assert {item.status for item in batch.items} == {models.TaskStatus.IN_PROGRESS}
        assert batch.items[0].attempts == 1

        # ... work on each, and complete it with its result
        result = {"summary": "Payloads, retries and batch claims."}
        completed = complete_task.sync(
            client=client,
            task_id=summary.id,
            body=models.CompleteRequest(worker_id=worker.id, result=result),
        )
        assert isinstance(completed, models.TaskRead)
        assert (completed.status, completed.result) == (models.TaskStatus.DONE, result)

        # or fail it: pending again after a backoff, until its last attempt
        failed = fail_task.sync(
            client=client,
            task_id=copy.id,
            body=models.FailRequest(worker_id=worker.id, error="the page did not load"),
        )
        assert isinstance(failed, models.TaskRead)
        assert (failed.status, failed.attempts) == (models.TaskStatus.PENDING, 1)
        assert failed.last_error == "the page did not load"
        assert failed.run_after > failed.claimed_at

        # every failed attempt is kept, with its worker, times and error
        attempts = list_attempts.sync(client=client, task_id=copy.id)
        assert isinstance(attempts, list)
        assert [(a.attempt, a.worker.name, a.error) for a in attempts] == [
            (1, "build-agent", "the page did not load")
        ]

        # another worker completing a task it does not hold: refused
        refused_completion = complete_task.sync_detailed(
            client=client,
            task_id=first.parsed.id,
            body=models.CompleteRequest(worker_id=worker.id + 1, result=None),
        )
        assert refused_completion.status_code == 409
        assert isinstance(refused_completion.parsed, models.Problem)
        assert refused_completion.parsed.type_ == "/problems/conflict"

    # without a key: the client without a token gets the documented 401 problem
    anonymous = client_package.Client(
        base_url=served_sqlite.base_url, raise_on_unexpected_status=True
    )
    with anonymous:
        refused = list_projects.sync_detailed(client=anonymous)
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.Problem)
    assert refused.parsed.type_ == "/problems/unauthorized"
    assert refused.parsed.detail == "missing `Authorization: Bearer <api key>` header"


def agent_loop_code() -> str:
    """The Python block of the "An agent loop" section of docs/clients.md."""
    section = CLIENTS_PAGE.read_text().split("## An agent loop", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_agent_loop_of_the_clients_page_works_through_the_queue(
    served_sqlite: ServedApp, client_package: ModuleType
) -> None:
    models = _module("models")
    create_project = _module("api.projects.projects_create_project")
    create_worker = _module("api.workers.workers_create_worker")
    create_task = _module("api.tasks.tasks_create_task")
    read_task = _module("api.tasks.tasks_read_task")
    user = create_user_with_cli(served_sqlite.database_url, "agent", env=served_sqlite.env)
    client = client_package.AuthenticatedClient(
        base_url=served_sqlite.base_url, token=user.api_key, raise_on_unexpected_status=True
    )
    page: dict[str, Any] = {}
    exec(compile(agent_loop_code(), str(CLIENTS_PAGE), "exec"), page)

    def work(task: Any) -> dict[str, Any]:
        if task.title == "explode":
            raise ValueError("cannot do this one")
        return {"words": len(task.title.split())}

    with client:
        project = create_project.sync(client=client, body=models.ProjectCreate(name="agents"))
        worker = create_worker.sync(
            client=client, body=models.WorkerCreate(project_id=project.id, name="agent-1")
        )
        titles = ["write the copy", "explode", "fix the header now"]
        tasks = [
            create_task.sync(client=client, body=models.TaskCreate(project_id=project.id, title=t))
            for t in titles
        ]
        completed = page["run_agent"](client, worker.id, work)
        assert completed == 2
        after = [read_task.sync(client=client, task_id=task.id) for task in tasks]
    assert [task.status for task in after] == [
        models.TaskStatus.DONE,
        models.TaskStatus.PENDING,  # failed once: retried after a backoff, not claimable yet
        models.TaskStatus.DONE,
    ]
    assert after[0].result == {"words": 3}
    assert after[2].result == {"words": 4}
    assert after[1].attempts == 1
