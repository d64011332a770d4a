"""schemathesis hooks for its runs over taskyard (``hooks`` in /schemathesis.toml).

Each one repairs a request the fuzzer makes that no client of this API would, so that every
check stays on and judges what it is meant to; none changes an answer or a check.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

IDEMPOTENCY_KEY = "Idempotency-Key"


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    _fresh_idempotency_key(case)
    _drop_optional_headers_breaking_their_pattern(case)


def _fresh_idempotency_key(case: Any) -> None:
    """A well-formed ``Idempotency-Key`` becomes a fresh one.

    A key belongs to the first request that used it (issue 10): the same key with another
    body is a 422 ``idempotency-key-reused``, as documented. The fuzzer draws keys from the
    header's pattern, so short ones (``" "``) come back with other bodies, and "valid data
    accepted" would fail on the documented answer. Clients send a new key per operation;
    so does this run. Malformed keys are left alone: their 400 is what is being tested.
    """
    headers = case.headers or {}
    value = headers.get(IDEMPOTENCY_KEY)
    if value is None:
        return
    pattern = _declared_pattern(case, IDEMPOTENCY_KEY)
    if pattern is not None and re.search(pattern, str(value)):
        headers[IDEMPOTENCY_KEY] = f'"{uuid.uuid4()}"'


def _drop_optional_headers_breaking_their_pattern(case: Any) -> None:
    """Leave out an optional header whose value breaks its pattern, in a positive case.

    schemathesis 4.32's coverage phase generates header values from letters and digits only
    (``HEADER_ALLOWED_CHARS``, specs/openapi/coverage/_wire.py), so it has no valid value for
    a header whose pattern needs a quote (``If-Match: "3"``, ``Idempotency-Key: "k"``); it
    then seeds the optional header with an invalid one (``If-Match: 0``) in cases it labels
    positive. Without the header the case is the valid request it claims to be.
    """
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or not case.headers:
        return
    for parameter in case.operation.headers:
        if parameter.is_required or parameter.name not in case.headers:
            continue
        pattern = parameter.definition.get("schema", {}).get("pattern")
        if pattern and not re.search(pattern, str(case.headers[parameter.name])):
            del case.headers[parameter.name]


def _declared_pattern(case: Any, name: str) -> str | None:
    for parameter in case.operation.headers:
        if parameter.name == name:
            pattern = parameter.definition.get("schema", {}).get("pattern")
            return pattern if isinstance(pattern, str) else None
    return None
