"""The OpenAPI document: every API operation authenticated and its problems documented."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from taskyard.problems import PROBLEM_MEDIA_TYPE


def test_every_api_operation_needs_a_bearer_key_and_documents_its_problems(
    sessionwise_app: FastAPI,
) -> None:
    document = sessionwise_app.openapi()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status"} <= set(problem["required"])
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        if path.startswith("/api/v1")
        for method, operation in item.items()
    ]
    # Issue 3 lists 19, plus GET /users/me; issue 11 adds complete (one task and a batch),
    # fail, retry and attempts.
    assert len(operations) == 25
    for path, method, operation in operations:
        assert operation["security"] == [{"HTTPBearer": []}], (path, method)
        for status in ("401", "404", "422", "503"):
            content = operation["responses"][status]["content"]
            assert list(content) == [PROBLEM_MEDIA_TYPE], (path, method, status)
    claim = document["paths"]["/api/v1/tasks/claim"]["post"]["responses"]
    assert {"200", "204"} <= set(claim)
    assert "201" in document["paths"]["/api/v1/tasks"]["post"]["responses"]
    # Health and problem docs need no key.
    for path in ("/health/live", "/health/ready", "/problems/{kind}"):
        assert "security" not in document["paths"][path]["get"]


async def test_problem_types_resolve_to_their_description(api_client: httpx.AsyncClient) -> None:
    listing = (await api_client.get("/problems")).json()
    assert {kind["type"] for kind in listing} >= {"/problems/not-found", "/problems/unauthorized"}
    for kind in listing:
        described = await api_client.get(kind["type"])
        assert described.status_code == 200
        assert described.json() == kind
    assert (await api_client.get("/problems/no-such-kind")).status_code == 404


async def test_health(api_client: httpx.AsyncClient) -> None:
    assert (await api_client.get("/health/live")).json() == {"status": "ok"}
    ready = (await api_client.get("/health/ready")).json()
    assert ready["status"] == "ok"
    assert set(ready["pool"]) == {"size", "checked_out", "overflow", "waiting"}
