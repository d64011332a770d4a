"""The OpenAPI document as clients see it (issue 16): ids, links, parameters, problems.

The document is built by the app factory (no server, no database); the cursor checks also
call the API through ``api_client``. schemathesis runs over the served document in
tests/faults/test_fuzz_api.py, a generated client in tests/test_generated_client.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sessionwise.fastapi.idempotency import IDEMPOTENCY_KEY_PATTERN
from taskyard.app import API_PREFIX, create_app
from taskyard.etags import IF_MATCH_PATTERN
from taskyard.openapi_contract import LINKS, Link, add_links
from taskyard.pagination import CURSOR_PATTERN, MAX_CURSOR_LENGTH, CursorCodec
from taskyard.problems import PROBLEM_MEDIA_TYPE
from taskyard.settings import Settings
from tests.taskyard.conftest import Actor

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# What FastAPI's default generate_unique_id makes: function, path, method.
DEFAULT_SHAPED = re.compile(rf"(_api_v1_|_({'|'.join(METHODS)})$|\{{|/)")
OPERATION_ID = re.compile(r"^[a-z]+-[a-z][a-z0-9_]*$")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _by_id(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        operation["operationId"]: (p, m, operation) for p, m, operation in _operations(document)
    }


def test_operation_ids_are_tag_dash_function_unique_and_not_fastapis_default(
    document: dict[str, Any],
) -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for path, method, operation in _operations(document):
        operation_id = operation["operationId"]
        assert OPERATION_ID.fullmatch(operation_id), (path, method, operation_id)
        assert not DEFAULT_SHAPED.search(operation_id), (path, method, operation_id)
        tag, _, function = operation_id.partition("-")
        assert operation["tags"][0] == tag, (path, method, operation_id)
        assert function.replace("_", "").isalnum()
    assert _by_id(document)["tasks-create_task"][:2] == (f"{API_PREFIX}/tasks", "post")


def test_operation_ids_are_stable_across_builds(document: dict[str, Any]) -> None:
    again = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
    assert sorted(_by_id(again)) == sorted(_by_id(document))


def test_only_the_api_health_and_problem_types_are_documented(document: dict[str, Any]) -> None:
    # Mounted sub-apps (the board under /board) are not part of the API's document.
    prefixes = (f"{API_PREFIX}/", "/health/", "/problems")
    assert all(path.startswith(prefixes) for path in document["paths"]), list(document["paths"])


def _links(document: dict[str, Any], source: str, status: str) -> dict[str, Any]:
    links: dict[str, Any] = _by_id(document)[source][2]["responses"][status]["links"]
    return links


def test_each_create_links_to_the_operations_that_use_its_id(document: dict[str, Any]) -> None:
    def targets(source: str, status: str = "201") -> set[str]:
        return {link["operationId"] for link in _links(document, source, status).values()}

    assert targets("projects-create_project") >= {
        "projects-read_project",
        "projects-update_project",
        "projects-delete_project",
        "projects-add_member",
        "projects-remove_member",
        "workers-create_worker",
        "workers-list_workers",
        "tasks-create_task",
        "tasks-list_tasks",
    }
    assert "tasks-claim_task" in targets("workers-create_worker")
    on_a_task = {
        "tasks-read_task",
        "tasks-update_task",
        "tasks-delete_task",
        "tasks-heartbeat",
        "tasks-complete_task",
        "tasks-fail_task",
    }
    assert targets("tasks-create_task") >= on_a_task
    assert targets("tasks-claim_task", "200") >= on_a_task | {"tasks-complete_tasks"}
    assert targets("tasks-fail_task", "200") >= {"tasks-retry_task", "tasks-list_attempts"}
    claimed = _links(document, "tasks-claim_task", "200")
    assert claimed["Complete"]["parameters"] == {"task_id": "$response.body#/id"}
    assert claimed["Complete"]["requestBody"] == {"worker_id": "$response.body#/assignee/id"}
    assert _links(document, "projects-create_project", "201")["CreateWorker"]["requestBody"] == {
        "project_id": "$response.body#/id"
    }


def _schema_properties(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    return set(document["components"]["schemas"][name]["properties"])


def test_every_link_names_parameters_and_fields_its_target_has(document: dict[str, Any]) -> None:
    operations = _by_id(document)
    pointer = re.compile(r"^\$response\.body#(/[a-z_]+|/[a-z_]+/[a-z_]+)$")
    for (source, status), links in LINKS.items():
        response = operations[source][2]["responses"][str(status)]
        properties = response["content"]["application/json"]["schema"]
        assert properties, source
        for name, link in links.items():
            _, _, target = operations[link.target]
            names = {parameter["name"] for parameter in target.get("parameters", [])}
            assert set(link.parameters) <= names, (source, name)
            if link.body:
                assert set(link.body) <= _schema_properties(document, target), (source, name)
            for expression in [*link.parameters.values(), *link.body.values()]:
                assert pointer.fullmatch(expression), (source, name, expression)


def test_every_operation_taking_an_id_is_reached_by_a_link(document: dict[str, Any]) -> None:
    # So schemathesis's stateful phase calls each with ids that exist.
    linked = {link.target for links in LINKS.values() for link in links.values()}
    for path, method, operation in _operations(document):
        if path.startswith(API_PREFIX) and "{" in path:
            assert operation["operationId"] in linked, (path, method)


def test_a_link_to_an_unknown_operation_is_an_error(document: dict[str, Any]) -> None:
    with pytest.raises(LookupError, match="tasks-no_such_operation"):
        add_links(
            document, {("tasks-create_task", 201): {"Nowhere": Link("tasks-no_such_operation")}}
        )


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [p for p in operation.get("parameters", []) if p["name"] == name]
    assert len(matches) == 1, name
    parameter: dict[str, Any] = matches[0]
    return parameter


def test_headers_and_the_cursor_are_documented_with_their_syntax(document: dict[str, Any]) -> None:
    operations = _by_id(document)
    for operation_id in ("tasks-update_task", "tasks-delete_task", "tasks-retry_task"):
        schema = _parameter(operations[operation_id][2], "If-Match")["schema"]
        assert (schema["type"], schema["pattern"]) == ("string", IF_MATCH_PATTERN)
        assert schema["maxLength"] == 1000
    idempotent = [
        operation
        for _, _, operation in _operations(document)
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    ]
    assert {operation["operationId"] for operation in idempotent} >= {
        "projects-create_project",
        "workers-create_worker",
        "tasks-create_task",
        "tasks-claim_task",
    }
    for operation in idempotent:
        schema = _parameter(operation, "Idempotency-Key")["schema"]
        assert (schema["type"], schema["pattern"]) == ("string", IDEMPOTENCY_KEY_PATTERN)
        assert "409" in operation["responses"], operation["operationId"]
    for listing in ("projects-list_projects", "workers-list_workers", "tasks-list_tasks"):
        operation = operations[listing][2]
        schema = _parameter(operation, "cursor")["schema"]
        assert (schema["type"], schema["pattern"]) == ("string", CURSOR_PATTERN)
        assert schema["maxLength"] == MAX_CURSOR_LENGTH
        assert "/problems/invalid-cursor" in operation["responses"]["400"]["description"]


def test_no_query_or_header_parameter_is_documented_as_nullable(document: dict[str, Any]) -> None:
    # A query string or header has no null: an optional parameter is absent or a value.
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            assert "anyOf" not in schema, (path, method, parameter["name"])
            assert schema.get("type") != "null", (path, method, parameter["name"])


def test_every_api_operation_documents_its_problems(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        expected = {"422"}
        if path.startswith(API_PREFIX):
            expected |= {"400", "401", "404", "413", "503", "504"}
        names = {p["name"] for p in operation.get("parameters", [])}
        if "If-Match" in names:
            expected.add("412")
        if "Idempotency-Key" in names:
            expected.add("409")
        if "{" not in path and not names and "requestBody" not in operation:
            expected.discard("422")  # nothing to validate
        for status in expected:
            assert status in responses, (path, method, status)
            assert list(responses[status]["content"]) == [PROBLEM_MEDIA_TYPE], (path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_codec_cursors_match_the_documented_pattern() -> None:
    codec = CursorCodec(b"k" * 32)
    for listing, after in (("tasks", 1), ("projects", 2**31 - 1), ("workers", 42)):
        cursor = codec.encode(listing, after)
        assert re.fullmatch(CURSOR_PATTERN, cursor), cursor
        assert len(cursor) <= MAX_CURSOR_LENGTH
        assert codec.decode(listing, cursor) == after


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",  # no dot: breaks the pattern
        "a b.c",  # a space: breaks the pattern (base64 would skip it)
        "abc.def.ghi",  # two dots
        "A" * 150 + "." + "B" * 60,  # the right shape, too long
        "dGFza3M6MQ.AAAAAAAAAAAAAAAAAAAAAA",  # the right shape, not signed by this service
    ],
)
async def test_every_bad_cursor_is_the_documented_400(
    api_client: httpx.AsyncClient, alice: Actor, cursor: str
) -> None:
    response = await api_client.get(
        f"{API_PREFIX}/tasks", params={"cursor": cursor}, headers=alice.headers
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["type"] == "/problems/invalid-cursor"


def test_the_document_is_built_once(sessionwise_app: FastAPI) -> None:
    assert sessionwise_app.openapi() is sessionwise_app.openapi()
