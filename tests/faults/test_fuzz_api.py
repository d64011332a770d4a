"""Bad input, generated: schemathesis fuzzes every operation of taskyard's OpenAPI document.

The app is served by uvicorn on its own PostgreSQL database (NUL bytes, huge integers and odd
Unicode hit PostgreSQL harder than SQLite) and called with a valid API key. Every operation
gets a bounded number of examples, valid and invalid (schemathesis's positive and negative
modes, plus its coverage phase: missing headers, undeclared methods, boundary values).

Two tests, because Hypothesis stops an operation at its first failing example: a failure of
a strict documentation check must not hide a 5xx behind it.

* ``test_no_server_error_and_responses_as_documented``: no 5xx; status codes, content types,
  headers and bodies as the document says; invalid input refused.
* ``test_full_openapi_conformance``: every check schemathesis has, including "valid input is
  accepted", 405 for undeclared methods, ``Allow`` headers, 401 before anything else.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskyard.app import create_app
from taskyard.settings import Settings
from tests.support.served_app import ServedApp

pytestmark = pytest.mark.faults

EXAMPLES_PER_OPERATION = 25
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,  # no example database on disk: every run starts fresh, and leaves nothing
    derandomize=True,  # the same examples on every run: CI results do not depend on luck
)
UVICORN_BAD_REQUEST = "Invalid HTTP request received."
CORE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# The document comes from the app factory itself (building it needs no server or database);
# the requests go to the served app. (schemathesis.pytest.from_fixture, which could load it
# from the served URL, fails on pytest 9: it sets `request.node._nodeid`, gone in pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
def fuzzed_app(served_module: ServedApp) -> ServedApp:
    return served_module


def _headers_break_their_pattern(case: Any) -> bool:
    for parameter in case.operation.headers:
        pattern = parameter.definition.get("schema", {}).get("pattern")
        value = (case.headers or {}).get(parameter.name)
        if pattern and value is not None and not re.search(pattern, str(value)):
            return True
    return False


def _problem_type(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


def _only_undeclared_query_is_invalid(case: Any) -> bool:
    """True when the query has names the operation does not declare, and every declared one
    that is present fits its schema: the only "invalid" part is what the API ignores."""
    query = case.query or {}
    schemas = {p.name: p.definition.get("schema", {}) for p in case.operation.query}
    if not set(query) - set(schemas):
        return False
    return all(
        jsonschema_rs.is_valid(schemas[name], _as_typed(schemas[name], value))
        for name, value in query.items()
        if name in schemas
    )


def _as_typed(schema: dict[str, Any], value: Any) -> Any:
    """A query value as the JSON value it stands for (query strings carry only text)."""
    if isinstance(value, str) and schema.get("type") == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _not_applicable(case: Any, response: Any) -> list[Any]:
    """Checks that do not apply to this exchange.

    * A ``cursor`` is opaque and signed: any string fits its schema, but one the service did
      not issue is refused with 400 ``invalid-cursor`` (see taskyard.pagination), on purpose.
    * Query parameters the operation does not declare are ignored, as HTTP APIs commonly do;
      schemathesis counts a request made only of such parameters as invalid input.
    * A request whose HTTP framing is broken (schemathesis's negative mode can send a header
      like ``Content-Length: @``) never reaches the app: uvicorn's parser answers it with its
      own ``400 text/plain`` "Invalid HTTP request received.", which no app can document.
    * schemathesis's coverage phase labels some cases positive although a header in them
      breaks its declared ``pattern`` (seen: ``If-Match: 0`` in a "near-boundary number" case
      for ``task_id``; the same family as schemathesis#4592 for ``format``). Refusing such a
      request is right, so "valid data accepted" is not judged on it.
    * An ``Idempotency-Key`` belongs to the first request that used it (issue 10): the
      fuzzer, drawing keys from the schema, sends the same short key with other bodies, and
      the 422 ``idempotency-key-reused`` that answers it is the documented behaviour.
    """
    excluded: list[Any] = []
    query = case.query or {}
    if (
        response.status_code == 400
        and "cursor" in query
        and response.json().get("type") == "/problems/invalid-cursor"
    ) or _headers_break_their_pattern(case):
        excluded.append(positive_data_acceptance)
    if (
        response.status_code == 422
        and _problem_type(response) == "/problems/idempotency-key-reused"
    ):
        excluded.append(positive_data_acceptance)
    if response.status_code == 400 and response.text == UVICORN_BAD_REQUEST:
        excluded += [content_type_conformance, response_schema_conformance]
    if response.status_code < 300 and _only_undeclared_query_is_invalid(case):
        excluded.append(negative_data_rejection)
    return excluded


def _exchange(case: Any, app: ServedApp, checks: list[Any] | None) -> None:
    response = case.call(base_url=app.base_url, headers=app.user.headers, timeout=10)
    case.validate_response(
        response,
        checks=checks,
        excluded_checks=_not_applicable(case, response),
        headers=app.user.headers,
        transport_kwargs={"base_url": app.base_url, "headers": app.user.headers, "timeout": 10},
    )


@pytest.mark.timeout(120)
@schema.parametrize()
@FUZZ_SETTINGS
def test_no_server_error_and_responses_as_documented(case: Any, fuzzed_app: ServedApp) -> None:
    _exchange(case, fuzzed_app, CORE_CHECKS)


@pytest.mark.timeout(120)
@schema.parametrize()
@FUZZ_SETTINGS
def test_full_openapi_conformance(case: Any, fuzzed_app: ServedApp) -> None:
    _exchange(case, fuzzed_app, None)
