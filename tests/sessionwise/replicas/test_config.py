"""Replica options: from keyword arguments and the environment (a JSON list), validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from sessionwise import Database, DatabaseConfig, DatabaseSettings
from sessionwise.replicas import WalPosition
from taskyard.settings import Settings

PRIMARY = "postgresql+asyncpg://app@primary/db"
REPLICA_1 = "postgresql+asyncpg://app:secret@replica1/db"
REPLICA_2 = "postgresql+asyncpg://app@replica2/db"


def test_the_defaults_have_no_replicas_and_ten_seconds_of_lag() -> None:
    config = DatabaseConfig(url=PRIMARY)
    assert config.replica_urls == ()
    assert config.replica_max_lag == 10.0
    assert not Database(PRIMARY).replicated


def test_replica_urls_come_from_the_environment_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_DB_URL", PRIMARY)
    monkeypatch.setenv("APP_DB_REPLICA_URLS", f'["{REPLICA_1}", "{REPLICA_2}"]')
    monkeypatch.setenv("APP_DB_REPLICA_MAX_LAG", "2.5")
    settings = DatabaseSettings(_env_prefix="APP_DB_")  # type: ignore[call-arg]
    assert settings.replica_urls == (REPLICA_1, REPLICA_2)
    assert settings.replica_max_lag == 2.5
    assert Database(settings=settings).config.replica_urls == (REPLICA_1, REPLICA_2)


def test_taskyard_reads_them_nested_and_keeps_its_other_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKYARD_DATABASE_URL", PRIMARY)
    monkeypatch.setenv("TASKYARD_DATABASE__REPLICA_URLS", f'["{REPLICA_1}"]')
    settings = Settings()
    assert settings.database.replica_urls == (REPLICA_1,)
    assert settings.database.read_sessions == "autocommit"  # taskyard's default, kept


def test_a_replica_list_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DB_URL", PRIMARY)
    monkeypatch.setenv("APP_DB_REPLICA_URLS", REPLICA_1)  # a URL, not a JSON list of them
    with pytest.raises(SettingsError, match='field "replica_urls"'):
        DatabaseSettings(_env_prefix="APP_DB_")  # type: ignore[call-arg]
    # Nested in taskyard's settings, pydantic-settings names the enclosing field.
    monkeypatch.setenv("TASKYARD_DATABASE__REPLICA_URLS", REPLICA_1)
    with pytest.raises(SettingsError, match='field "database"'):
        Settings()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replica_urls": ["sqlite+aiosqlite:///replica.db"]}, "PostgreSQL streaming replicas"),
        ({"replica_urls": ["not a url"]}, "not a SQLAlchemy URL"),
        ({"replica_urls": [REPLICA_1, REPLICA_1]}, "listed twice"),
        ({"replica_urls": [PRIMARY]}, "primary's URL is listed"),
        ({"url": "sqlite+aiosqlite:///app.db", "replica_urls": [REPLICA_1]}, "PostgreSQL primary"),
        ({"replica_urls": "postgresql+asyncpg://x/db"}, "tuple"),
        ({"replica_max_lag": 0}, "greater than 0"),
        ({"replica_check_interval": -1}, "greater than 0"),
    ],
)
def test_invalid_replica_options_fail_with_a_clear_message(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        DatabaseConfig.model_validate({"url": PRIMARY, **options})
    assert "secret" not in str(raised.value)  # a replica's password is never echoed


def test_wal_positions_read_and_print_as_postgresql_does() -> None:
    position = WalPosition.parse("16/B374D848")
    assert position.lsn == (0x16 << 32) | 0xB374D848
    assert str(position) == "16/B374D848"
    assert WalPosition.parse("0/0") < position
    for bad in ("", "16", "16/", "x/1", "1/100000000", "-1/0"):
        with pytest.raises(ValueError, match="not a WAL position"):
            WalPosition.parse(bad)
