"""Service settings, read from ``TASKYARD_*`` environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sessionwise import DatabaseConfig

__all__ = ["DEFAULT_DATABASE_URL", "MAX_BODY_SIZE", "Settings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./taskyard.db"
MAX_BODY_SIZE = 1024 * 1024
APPLICATION_NAME = "taskyard"


class Settings(BaseSettings):
    """Everything `create_app` needs.

    ``TASKYARD_DATABASE_URL`` picks the database; pool and driver options are sessionwise's
    `DatabaseConfig` fields, nested: ``TASKYARD_DATABASE__POOL_TIMEOUT=2``.
    ``TASKYARD_SECRET_KEY`` signs pagination cursors; without it each process signs with a
    random key (``taskyard serve`` generates one shared by all of its workers).
    """

    model_config = SettingsConfigDict(
        env_prefix="TASKYARD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    database: DatabaseConfig = DatabaseConfig(application_name=APPLICATION_NAME)
    secret_key: SecretStr | None = None
    max_body_size: int = Field(default=MAX_BODY_SIZE, ge=0)

    @field_validator("database", mode="before")
    @classmethod
    def _named_taskyard(cls, value: Any) -> Any:
        # Options given piecewise (TASKYARD_DATABASE__POOL_SIZE=...) keep taskyard's name in
        # pg_stat_activity unless they set one.
        if isinstance(value, dict):
            return {"application_name": APPLICATION_NAME, **value}
        return value
