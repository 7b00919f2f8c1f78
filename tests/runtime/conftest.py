"""Fixtures for the runtime tests: a migrated database (SQLite file or a fresh PostgreSQL database),
an API key, and a TestClient on the real app.

PostgreSQL comes from ``TRIPWIRE_TEST_PG_URL``, which ``make test`` sets from ``.ci/services.sh``
(the Debian server on loopback). Tests marked ``postgres`` fail (never skip) without it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tripwire.runtime.app import create_app
from tripwire.runtime.keys import create_key
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.store import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]


def _admin_pg_url() -> str:
    """The server ``make test`` started (``TRIPWIRE_TEST_PG_URL``). Installing and starting
    PostgreSQL belongs to ``make``/``.ci``, never to a test."""
    url = os.environ.get("TRIPWIRE_TEST_PG_URL")
    if not url:
        pytest.fail(
            "no PostgreSQL for the postgres tests: run `make test`, or start one with "
            "`export TRIPWIRE_TEST_PG_URL=$(bash .ci/services.sh)`"
        )
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    admin = _admin_pg_url().replace("postgresql+psycopg://", "postgresql://")
    name = f"tw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tw.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends: the same test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tw.db'}"
    return str(request.getfixturevalue("pg_url"))


def migrated(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


class Api:
    """A TestClient with a tenant's key already in the headers."""

    def __init__(self, client: TestClient, engine: Engine, key: str) -> None:
        self.client = client
        self.engine = engine
        self.key = key
        self.h = {"Authorization": f"Bearer {key}"}

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(path, headers={**self.h, **kw.pop("headers", {})}, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.h, **kw.pop("headers", {})}, **kw)

    def new_key(self, tenant: str) -> str:
        return create_key(self.engine, tenant)


def open_api(url: str, config: RuntimeConfig | None = None) -> tuple[TestClient, Api]:
    engine = migrated(url)
    key = create_key(engine, "tenant-a")
    client = TestClient(create_app(engine, config))
    return client, Api(client, engine, key)


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    client, a = open_api(db_url)
    with client:
        yield a
    a.engine.dispose()


@pytest.fixture
def sqlite_api(sqlite_url: str) -> Iterator[Api]:
    client, a = open_api(sqlite_url)
    with client:
        yield a
    a.engine.dispose()
