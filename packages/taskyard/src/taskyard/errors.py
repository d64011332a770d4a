"""The errors services raise, one `ProblemKind` each; `taskyard.problems` renders them.

Kept free of FastAPI so that services and the command line share them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["KIND_BY_STATUS", "FieldError", "ProblemError", "ProblemKind", "unknown_reference"]


@dataclass(frozen=True)
class _KindInfo:
    status: int
    title: str
    description: str


class ProblemKind(enum.Enum):
    """Every error kind the API can answer with; the value is the ``type`` URI's last part."""

    INVALID_REQUEST = "invalid-request"
    MALFORMED_JSON = "malformed-json"
    INVALID_CURSOR = "invalid-cursor"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    CONFLICT = "conflict"
    PRECONDITION_FAILED = "precondition-failed"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    VALIDATION_ERROR = "validation-error"
    INTERNAL_ERROR = "internal-error"
    SERVICE_UNAVAILABLE = "service-unavailable"
    DATABASE_TIMEOUT = "database-timeout"
    IDEMPOTENCY_KEY_IN_USE = "idempotency-key-in-use"
    IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"

    @property
    def uri(self) -> str:
        return f"/problems/{self.value}"

    @property
    def info(self) -> _KindInfo:
        return _KINDS[self]

    @property
    def status(self) -> int:
        return _KINDS[self].status


_KINDS: dict[ProblemKind, _KindInfo] = {
    ProblemKind.INVALID_REQUEST: _KindInfo(
        400, "Invalid request", "A header or parameter could not be understood."
    ),
    ProblemKind.MALFORMED_JSON: _KindInfo(
        400, "Malformed JSON", "The request body is not valid JSON."
    ),
    ProblemKind.INVALID_CURSOR: _KindInfo(
        400,
        "Invalid cursor",
        "The pagination cursor was not issued by this service for this listing, or was "
        "altered. Start again without a cursor.",
    ),
    ProblemKind.UNAUTHORIZED: _KindInfo(
        401,
        "Authentication required",
        "Send a valid, unrevoked API key as `Authorization: Bearer <key>`.",
    ),
    ProblemKind.FORBIDDEN: _KindInfo(
        403, "Forbidden", "You are a member of the project, but only its owner may do this."
    ),
    ProblemKind.NOT_FOUND: _KindInfo(
        404,
        "Not found",
        "No such resource, or it belongs to a project you are not a member of.",
    ),
    ProblemKind.METHOD_NOT_ALLOWED: _KindInfo(
        405, "Method not allowed", "The resource does not support this method."
    ),
    ProblemKind.CONFLICT: _KindInfo(
        409, "Conflict", "The change conflicts with the current state of the data."
    ),
    ProblemKind.PRECONDITION_FAILED: _KindInfo(
        412,
        "Precondition failed",
        "`If-Match` does not match the current version: the resource changed since you "
        "read it. Read it again (the new `ETag`) and retry.",
    ),
    ProblemKind.PAYLOAD_TOO_LARGE: _KindInfo(
        413, "Content too large", "The request body is larger than the limit (1 MiB)."
    ),
    ProblemKind.UNSUPPORTED_MEDIA_TYPE: _KindInfo(
        415, "Unsupported media type", "Send request bodies as `application/json`."
    ),
    ProblemKind.VALIDATION_ERROR: _KindInfo(
        422, "Invalid input", "One or more fields are invalid; see `errors`."
    ),
    ProblemKind.INTERNAL_ERROR: _KindInfo(
        500, "Internal error", "A bug on our side; nothing was committed."
    ),
    ProblemKind.SERVICE_UNAVAILABLE: _KindInfo(
        503,
        "Service unavailable",
        "The database is busy or unreachable; nothing was committed. Retry after "
        "`Retry-After` seconds.",
    ),
    ProblemKind.DATABASE_TIMEOUT: _KindInfo(
        504, "Database timeout", "A database statement ran too long; nothing was committed."
    ),
    # After the generic kinds of their statuses: KIND_BY_STATUS keeps the first one listed.
    ProblemKind.IDEMPOTENCY_KEY_IN_USE: _KindInfo(
        409,
        "Idempotency key in use",
        "A request with this `Idempotency-Key` is still being processed. Retry after "
        "`Retry-After` seconds: you get its answer then.",
    ),
    ProblemKind.IDEMPOTENCY_KEY_REUSED: _KindInfo(
        422,
        "Idempotency key reused",
        "This `Idempotency-Key` was used for a different request (method, path or body). "
        "Use a new key for a new request.",
    ),
}

KIND_BY_STATUS = {info.status: kind for kind, info in reversed(_KINDS.items())}


class FieldError(BaseModel):
    """One invalid field: where it was (``body``, ``query``, ``path``, ``header``) and why."""

    field: str
    location: str = Field(alias="in")
    message: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ProblemError(Exception):
    """Raise to answer with a problem of *kind*; the request's transaction rolls back."""

    def __init__(
        self,
        kind: ProblemKind,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or kind.info.title)
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None
        self.extensions = extensions


def unknown_reference(field: str, message: str) -> ProblemError:
    """A 404 naming the body field that refers to something missing (or not visible).

    404 rather than 422: the request is well-formed, what it points at is not there, and the
    answer must not differ from "exists, but in a project you are not a member of".
    """
    return ProblemError(
        ProblemKind.NOT_FOUND,
        f"{field}: {message}",
        errors=[FieldError(field=field, location="body", message=message)],
    )
