"""API and command-line schemas of users."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from taskyard.api_types import InputModel, Name, storable_text

__all__ = ["Email", "UserCreate", "UserRead"]

# Deliberately loose (one @, a dot in the domain, no spaces): the address is an identifier
# here, never mailed to.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+", re.ASCII)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an email address")
    return value.lower()


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
    AfterValidator(storable_text),
    AfterValidator(_email),
    Field(json_schema_extra={"pattern": r"^\s*[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+\s*$"}),
]


class UserCreate(InputModel):
    email: Email
    name: Name


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
