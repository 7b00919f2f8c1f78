"""The database: Alembic revisions build exactly the schema the tables declare (on SQLite and
PostgreSQL), WAL mode, URL handling, upgrades that keep data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Boolean, Column, Engine, MetaData

from tripwire.errors import UsageError
from tripwire.runtime import store
from tripwire.runtime.alerts import Alert
from tripwire.runtime.store import current_revision, make_engine, migrate, normalise_url

HEAD = "0005_tenant_state"


def _schema_diff(engine: Engine, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``metadata``:
    tables, columns, types, nullability, server defaults, indexes, unique and foreign keys."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, metadata))


def test_migrations_build_exactly_the_declared_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # idempotent
    assert current_revision(engine) == HEAD
    assert _schema_diff(engine, store.metadata) == []
    # The comparison sees a drift between the tables and the revisions: a column the tables
    # declare but no revision creates, and an index a revision creates but the tables lack.
    drifted = MetaData()
    for table in store.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["alerts"].append_column(Column("acknowledged", Boolean, nullable=True))
    ix = next(i for i in drifted.tables["events"].indexes if i.name == "ix_events_tenant_agent")
    drifted.tables["events"].indexes.discard(ix)
    ops = {(d[0], getattr(d[-1], "name", None)) for d in _schema_diff(engine, drifted)}
    assert ops == {("add_column", "acknowledged"), ("remove_index", "ix_events_tenant_agent")}
    engine.dispose()


def test_an_alert_row_fills_every_alerts_column_but_its_id() -> None:
    now = datetime.now(UTC)
    row = Alert(1, "drift", "ADWIN:length", "medium", "shift", now).row()
    assert set(row) == {c.name for c in store.alerts.columns} - {"id"}


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
    engine = make_engine(sqlite_url)
    migrate(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.execute(store.tenants.insert().values(name="t", created_at=datetime.now(UTC)))
    migrate(engine)
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        assert conn.execute(store.tenants.select()).one().name == "t"
    engine.dispose()
