"""Entity tags of versioned resources, and the ``If-Match`` precondition (RFC 9110 §13.1.1).

A task's ETag is its version as a strong tag, ``"7"``. ``If-Match`` compares strongly, so a
weak tag (``W/"7"``) never matches; ``*`` matches any existing resource.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header

from taskyard.api_types import MAX_ID, without_null
from taskyard.errors import FieldError, ProblemError, ProblemKind

__all__ = ["IfMatch", "IfMatchHeader", "etag", "parse_if_match"]

# RFC 9110 §8.8.3 / §13.1.1: "*" or a list of entity tags; ASCII etagc only (the tags this
# service issues are digits). Documented in the schema too, so that a malformed header is a
# 422 naming it, checked after authentication.
_ETAG = r'(W/)?"[\x21\x23-\x7e]*"'
IF_MATCH_PATTERN = rf"^[ \t]*(\*|{_ETAG}([ \t]*,[ \t]*{_ETAG})*)[ \t]*$"
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e]*)"')


def etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed ``If-Match``: any version (``*``), or the versions of its strong tags."""

    any_version: bool
    versions: frozenset[int]

    def matches(self, version: int) -> bool:
        return self.any_version or version in self.versions

    def fail(self, version: int) -> ProblemError:
        return ProblemError(
            ProblemKind.PRECONDITION_FAILED,
            f"If-Match does not match the current version {etag(version)}",
            headers={"ETag": etag(version)},
        )


def parse_if_match(value: str) -> IfMatch:
    if _IF_MATCH.fullmatch(value) is None:
        raise ProblemError(
            ProblemKind.INVALID_REQUEST,
            'If-Match: expected "*" or quoted entity tags like "3"',
            errors=[FieldError(field="If-Match", location="header", message="malformed")],
        )
    if value.strip(" \t") == "*":
        return IfMatch(any_version=True, versions=frozenset())
    versions = {
        int(opaque)
        for weak, opaque in _TAG.findall(value)
        if not weak and opaque.isdigit() and len(opaque) <= 10 and int(opaque) <= MAX_ID
    }
    return IfMatch(any_version=False, versions=frozenset(versions))


async def _if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=1000,
            pattern=IF_MATCH_PATTERN,
            description='Apply only if the task is still at this version (its ETag, e.g. "3").',
            json_schema_extra=without_null,
        ),
    ] = None,
) -> IfMatch | None:
    return None if if_match is None else parse_if_match(if_match)


IfMatchHeader = Annotated[IfMatch | None, Depends(_if_match)]
