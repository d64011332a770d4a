"""The OpenAPI document as clients see it: operation ids, the `Problem` schema, links.

* Operation ids are ``<tag>-<function>`` (``tasks-create_task``), the FastAPI full-stack
  template's recipe (https://fastapi.tiangolo.com/advanced/generate-clients/): generators
  name their functions after them, so a generated client reads ``tasks.tasks_create_task``
  rather than FastAPI's default ``create_task_api_v1_tasks_post``. They change only when a
  route's tag or function is renamed.
* `LINKS` says which operations take the id a create (or a claim) answers with: OpenAPI
  links (https://spec.openapis.org/oas/v3.1.0#link-object), which generators document and
  schemathesis's stateful phase follows, so it reaches members, heartbeats and claims with
  ids that exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from taskyard.problems import Problem, problem_responses

__all__ = ["LINKS", "Link", "add_links", "document_contract", "operation_id"]


def operation_id(route: APIRoute) -> str:
    """``<first tag>-<endpoint function>``: FastAPI's ``generate_unique_id_function``."""
    if not route.tags:
        # Every router of the API has a tag; an untagged route keeps a readable id, and
        # tests/taskyard/test_openapi_contract.py fails on it.
        return route.name
    tag = route.tags[0]
    return f"{getattr(tag, 'value', tag)}-{route.name}"


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: *target* (an operation id) with values taken from the response.

    *parameters* maps a target parameter (path or query) to a runtime expression;
    *body* maps fields of the target's JSON body to expressions (schemathesis merges them
    into the body it generates, unless *whole_body*; other tools read them as
    documentation).
    """

    target: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    whole_body: bool = False

    def as_openapi(self) -> dict[str, Any]:
        link: dict[str, Any] = {"operationId": self.target}
        if self.parameters:
            link["parameters"] = dict(self.parameters)
        if self.body:
            link["requestBody"] = dict(self.body)
        if self.description:
            link["description"] = self.description
        if self.whole_body:
            # *body* is the whole body (a oneOf): schemathesis must not add generated fields.
            link["x-schemathesis"] = {"merge_body": False}
        return link


_ID = "$response.body#/id"
_PROJECT = {"project_id": _ID}
_OWNER = {"user_id": "$response.body#/owner_id"}
_WORKER = {"worker_id": _ID}
_TASK = {"task_id": _ID}
# A claim answers with the task and the worker now holding its lease.
_CLAIMER = {"worker_id": "$response.body#/assignee/id"}


def _task_links(task: Mapping[str, str], worker: Mapping[str, str]) -> dict[str, Link]:
    """Links to the operations on one task; *worker* fills the body of the lease holder's."""
    return {
        "ReadTask": Link("tasks-read_task", task),
        "UpdateTask": Link("tasks-update_task", task),
        "DeleteTask": Link("tasks-delete_task", task),
        "Heartbeat": Link("tasks-heartbeat", task, worker),
        "Complete": Link("tasks-complete_task", task, worker),
        "Fail": Link("tasks-fail_task", task, worker),
        "Retry": Link("tasks-retry_task", task),
        "ListAttempts": Link("tasks-list_attempts", task),
    }


LINKS: dict[tuple[str, int], dict[str, Link]] = {
    ("projects-create_project", 201): {
        "ReadProject": Link("projects-read_project", _PROJECT),
        "UpdateProject": Link("projects-update_project", _PROJECT),
        "DeleteProject": Link("projects-delete_project", _PROJECT),
        # The one user a new project surely has is its owner: adding them again is a 409,
        # removing them too (an owner cannot leave); other users' ids come from elsewhere.
        "AddMember": Link("projects-add_member", _PROJECT, _OWNER, whole_body=True),
        "RemoveMember": Link("projects-remove_member", _PROJECT, _OWNER, whole_body=True),
        "CreateWorker": Link("workers-create_worker", body=_PROJECT),
        "ListWorkers": Link("workers-list_workers", _PROJECT),
        "CreateTask": Link("tasks-create_task", body=_PROJECT),
        "ListTasks": Link("tasks-list_tasks", _PROJECT),
    },
    ("workers-create_worker", 201): {
        "ReadWorker": Link("workers-read_worker", _WORKER),
        "UpdateWorker": Link("workers-update_worker", _WORKER),
        "DeleteWorker": Link("workers-delete_worker", _WORKER),
        "Claim": Link(
            "tasks-claim_task", body={**_WORKER, "project_id": "$response.body#/project_id"}
        ),
        "AssignTask": Link(
            "tasks-create_task",
            body={"project_id": "$response.body#/project_id", "assignee_id": _ID},
        ),
    },
    # The lease holder's operations on a task nobody claimed answer 409; a claim's links
    # give them the worker. (They follow a claim without `limit`: with it, the answer is a
    # list, `{"items": [...]}`, with no `id` to take.)
    ("tasks-create_task", 201): _task_links(_TASK, {}),
    ("tasks-claim_task", 200): {
        **_task_links(_TASK, _CLAIMER),
        "CompleteMany": Link("tasks-complete_tasks", body=_CLAIMER),
    },
    # A failed attempt leaves the task pending again, or dead after its last: retry it.
    ("tasks-fail_task", 200): {
        "ReadTask": Link("tasks-read_task", _TASK),
        "Retry": Link("tasks-retry_task", _TASK),
        "ListAttempts": Link("tasks-list_attempts", _TASK),
    },
    **{
        (f"{listing}-list_{listing}", 200): {
            "NextPage": Link(
                f"{listing}-list_{listing}",
                {"cursor": "$response.body#/next_cursor"},
                description="The next page (the same filters); none after the last one.",
            )
        }
        for listing in ("projects", "workers", "tasks")
    },
}


def add_links(document: dict[str, Any], links: Mapping[tuple[str, int], dict[str, Link]]) -> None:
    """Put *links* into the responses of *document*; unknown operation ids are an error."""
    operations = {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    for (source, status), entries in links.items():
        for entry in entries.values():
            if entry.target not in operations:
                raise LookupError(f"link from {source} to unknown operation {entry.target}")
        response = operations[source]["responses"][str(status)]
        response["links"] = {name: entry.as_openapi() for name, entry in entries.items()}


_FORGED_CURSOR = (
    "Invalid request: a malformed header, or `/problems/invalid-cursor`, a `cursor` that "
    "this listing did not issue (the schema can give a cursor's shape, not its signature)."
)


def _absent_not_null(document: dict[str, Any]) -> None:
    """Document optional query and header parameters as absent-or-X, never null.

    FastAPI renders ``X | None`` as ``anyOf: [X, null]``, but a query string or header has no
    null: a client leaves the parameter out (generators otherwise send the text ``null``).
    Keywords beside the ``anyOf`` (``pattern``, ``maxLength``) move into the one schema left.
    """
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                branches = schema.get("anyOf")
                if parameter["in"] not in ("query", "header") or branches is None:
                    continue
                others = [branch for branch in branches if branch.get("type") != "null"]
                if len(others) == 1 and len(others) < len(branches):
                    del schema["anyOf"]
                    schema.update(others[0])
                    if schema.get("default", 0) is None:
                        del schema["default"]


def _describe_cursor_refusal(document: dict[str, Any]) -> None:
    """Say on every listing that its 400 also answers a well-shaped but forged cursor."""
    for item in document["paths"].values():
        for operation in item.values():
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            if "cursor" in names:
                operation["responses"]["400"]["description"] = _FORGED_CURSOR


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _validation_errors_as_problems(document: dict[str, Any]) -> None:
    """Every 422 is a problem (taskyard.problems answers them), also where FastAPI added
    its default entry (operations not under /api/v1); its unused schemas go."""
    for item in document["paths"].values():
        for operation in item.values():
            entry = operation.get("responses", {}).get("422", {})
            schema = entry.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == _FASTAPI_422:
                operation["responses"]["422"] = problem_responses(422)[422]
    if _FASTAPI_422 not in json.dumps(document["paths"]):
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)


def _add_problem_schema(document: dict[str, Any]) -> None:
    """The `Problem` schema that ``problem_responses`` refer to (no route returns it)."""
    _, definitions = models_json_schema(
        [(Problem, "serialization")], ref_template="#/components/schemas/{model}"
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))


def document_contract(app: FastAPI) -> None:
    """Finish *app*'s OpenAPI document (built once, on first use): `Problem`, `LINKS`."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _add_problem_schema(document)
        _validation_errors_as_problems(document)
        _absent_not_null(document)
        _describe_cursor_refusal(document)
        add_links(document, LINKS)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
