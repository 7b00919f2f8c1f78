from __future__ import annotations

import pytest
from sqlalchemy import inspect

from tripwire.errors import UsageError
from tripwire.runtime.store import current_revision, make_engine, migrate, normalise_url


def test_migration_creates_schema_and_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)
    assert current_revision(engine) == "0002"
    names = set(inspect(engine).get_table_names())
    assert {
        "events",
        "alerts",
        "api_keys",
        "tenants",
        "audit_queue",
        "monitor_health",
        "drift_state",
        "monitor_fingerprints",
        "alembic_version",
    } <= names
    engine.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_bad_urls() -> None:
    with pytest.raises(UsageError, match="not supported"):
        normalise_url("mysql://x/y")
    with pytest.raises(UsageError, match="does not exist"):
        make_engine("sqlite:////no/such/folder/x.db")
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")


def test_upgrade_from_the_first_revision_keeps_data(sqlite_url: str) -> None:
    from datetime import UTC, datetime

    from tripwire.runtime import store

    engine = make_engine(sqlite_url)
    migrate(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.execute(store.tenants.insert().values(name="t", created_at=datetime.now(UTC)))
    migrate(engine)
    assert current_revision(engine) == "0002"
    with engine.connect() as conn:
        assert conn.execute(store.tenants.select()).one().name == "t"
    engine.dispose()
