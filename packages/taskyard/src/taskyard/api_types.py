"""Field types and small models shared by every domain's API schemas.

Every string that reaches the database passes `storable_text`: PostgreSQL rejects NUL
characters in text, and a lone UTF-16 surrogate (valid in JSON as ``"\\ud800"``) cannot be
encoded as UTF-8 by any driver. Both would otherwise surface as a 500 from deep in the driver.
Every id is bounded by the INTEGER columns that store it, so a huge number is a 422 and
never an overflow error from the database.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

__all__ = [
    "INTEGRAL",
    "MAX_ID",
    "Description",
    "InputModel",
    "MaxAttempts",
    "Name",
    "Omittable",
    "Page",
    "Ref",
    "ResourceId",
    "optional_not_null",
    "storable_text",
    "without_null",
]

MAX_ID = 2**31 - 1  # ids are INTEGER columns on both backends


def storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _integral(value: Any) -> Any:
    # JSON has one number type: 5.0 is an integer to JSON Schema, so it is to us. (Strict
    # mode still refuses "5" and true.)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be omitted, but not null")
    return value


# After the constraints, so that they stay plain minimum/maximum in the JSON schema.
INTEGRAL = BeforeValidator(_integral)
ResourceId = Annotated[int, Field(ge=1, le=MAX_ID), INTEGRAL]
_T = TypeVar("_T")
Omittable = Annotated[_T | None, BeforeValidator(_refuse_null)]
"""A body field that may be left out (None then) but not sent as null; see `optional_not_null`."""
# The patterns only document in the schema what the validators check (with friendlier
# messages): no NUL, and for names something besides whitespace.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(storable_text),
    # \x1c-\x1f and \x85 are whitespace to Python's strip() but not to JSON Schema's \s.
    Field(json_schema_extra={"pattern": r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"}),
]
Description = Annotated[
    str,
    Field(max_length=10_000, json_schema_extra={"pattern": r"^[^\x00]*$"}),
    AfterValidator(storable_text),
]
MaxAttempts = Annotated[
    int,
    Field(ge=1, le=100, description="Attempts before a failing task is dead."),
    INTEGRAL,
]


def without_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` hook: document an optional value as absent-or-X, never null."""
    any_of = schema.pop("anyOf", None)
    if any_of is not None:
        others = [branch for branch in any_of if branch.get("type") != "null"]
        if len(others) == 1:
            schema.update(others[0])
        else:
            schema["anyOf"] = others
    if schema.get("default", 0) is None:
        del schema["default"]


def optional_not_null(description: str | None = None, *, strict: bool | None = None) -> Any:
    """``Field`` of an `Omittable` body field: absent means None, an explicit null is a 422.

    The JSON schema shows plain ``X``, so clients and schema-driven tests do not take null
    for a value.
    """
    return Field(
        default=None, description=description, strict=strict, json_schema_extra=without_null
    )


class InputModel(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped.

    Strict: ``"5"``, ``true`` or ``5.0`` for an integer is a 422, as the schema says, not
    quietly converted. (Enum fields opt out: FastAPI validates the decoded JSON, in which an
    enum value can only be a string.)
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class Ref(BaseModel):
    """A reference to a related resource, embedded in reads."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a keyset-paginated listing; pass ``next_cursor`` back as ``cursor``."""

    items: list[ItemT]
    next_cursor: str | None = Field(
        description="Opaque; null on the last page. Valid for the same listing only."
    )
