"""No silent default database (issue 9, finding 7): a missing URL is an error that says how."""

from __future__ import annotations

import pytest

from sessionwise import ConfigurationError, Database, DatabaseConfig, DatabaseSettings


@pytest.fixture(autouse=True)
def _no_url_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SESSIONWISE_URL", "APP_DB_URL"):
        monkeypatch.delenv(name, raising=False)


def test_database_without_a_url_says_how_to_give_one() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Database()
    message = str(raised.value)
    assert 'Database("postgresql+asyncpg://' in message  # the argument
    assert "settings=DatabaseSettings()" in message  # the environment ...
    assert "SESSIONWISE_URL" in message  # ... and its variable


def test_settings_without_a_url_do_not_fill_one_in() -> None:
    with pytest.raises(ConfigurationError, match="Database has no URL"):
        Database(settings=DatabaseConfig(pool_timeout=1.0), pool_size=2)


def test_environment_settings_name_the_variable_with_the_prefix_in_use() -> None:
    with pytest.raises(ConfigurationError, match="SESSIONWISE_URL"):
        DatabaseSettings()
    with pytest.raises(ConfigurationError, match="set the environment variable APP_DB_URL"):
        DatabaseSettings(_env_prefix="APP_DB_")


def test_a_url_from_any_of_the_three_places_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "sqlite+aiosqlite:///./given.db"
    assert Database(url).config.url == url
    assert Database(settings=DatabaseConfig(url=url)).config.url == url
    monkeypatch.setenv("APP_DB_URL", url)
    monkeypatch.setenv("APP_DB_POOL_TIMEOUT", "1.5")
    db = Database(settings=DatabaseSettings(_env_prefix="APP_DB_"))
    assert (db.config.url, db.config.pool_timeout) == (url, 1.5)


def test_configuration_error_is_a_value_error() -> None:
    # Existing `except ValueError` around app configuration keeps catching it.
    assert issubclass(ConfigurationError, ValueError)
