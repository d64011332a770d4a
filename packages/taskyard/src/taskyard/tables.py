"""The declarative base of every taskyard table, on a registry of its own.

A private registry and `MetaData` keep taskyard's tables (and the class names its
relationships refer to, like ``"Task"``) apart from any other SQLModel model in the same
process. The naming convention gives constraints stable names for Alembic.
"""

from __future__ import annotations

import enum

from sqlalchemy import MetaData, Table
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

__all__ = ["TableModel", "enum_values", "metadata", "table_of"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class TableModel(SQLModel, registry=registry(metadata=metadata)):
    """Base class of taskyard's SQLModel tables."""


def enum_values(enum_class: type[enum.Enum]) -> list[str]:
    """Store an enum's values (``"in_progress"``), not SQLAlchemy's default, its names."""
    return [str(member.value) for member in enum_class]


def table_of(model: type[TableModel]) -> Table:
    """The `Table` of a model, for Core statements (SQLModel types ``__table__`` loosely)."""
    table = getattr(model, "__table__", None)
    assert isinstance(table, Table)
    return table
