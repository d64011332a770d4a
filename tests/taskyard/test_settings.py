"""Settings come from TASKYARD_* variables; the database options nest under DATABASE__."""

from __future__ import annotations

import pytest

from taskyard.settings import DEFAULT_DATABASE_URL, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKYARD_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./taskyard.db"
    assert settings.database.application_name == "taskyard"
    assert settings.max_body_size == 1024 * 1024
    assert settings.secret_key is None


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKYARD_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    monkeypatch.setenv("TASKYARD_DATABASE__POOL_SIZE", "3")
    monkeypatch.setenv("TASKYARD_DATABASE__POOL_TIMEOUT", "1.5")
    monkeypatch.setenv("TASKYARD_SECRET_KEY", "s3cret")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert (settings.database.pool_size, settings.database.pool_timeout) == (3, 1.5)
    assert settings.database.application_name == "taskyard"  # kept when options come piecewise
    assert settings.secret_key is not None
    assert "s3cret" not in repr(settings)


def test_unknown_database_options_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKYARD_DATABASE__POOL_SIZ", "3")
    with pytest.raises(ValueError, match="pool_siz"):
        Settings()
