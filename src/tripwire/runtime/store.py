"""The runtime database: tables, engine set-up (SQLite WAL or PostgreSQL) and Alembic migrations.

Tables are SQLAlchemy Core ``Table`` objects: the ingest path inserts thousands of rows a second
and the ORM's unit of work would cost more than the monitors. The schema itself is owned by the
Alembic revisions in ``runtime/migrations``; :func:`migrate` brings any database to head.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tripwire.errors import UsageError

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# A dashboard sign-in: a random token of its own (stored as SHA-256), read-only, with an expiry;
# it dies with the key it was opened with (revoked or deleted) and on logout.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("key_id", Integer, ForeignKey("api_keys.id"), nullable=False),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("scope", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_dashboard_sessions_expires", "expires_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("session", String(200), nullable=True),
    Column("type", String(20), nullable=False),
    Column("content", Text, nullable=True),
    Column("tool", String(200), nullable=True),
    Column("arguments", JSON, nullable=True),
    Column("model", String(200), nullable=True),
    Column("source", String(20), nullable=False),
    Column("score", Float, nullable=False),
    Column("action", String(10), nullable=False),
    Column("verdicts", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # The client's id of the event (or one derived from its request or OTLP span): a retry of a
    # stored event finds it here instead of storing it twice. NULL (no key) is never a duplicate.
    Column("idempotency_key", String(255), nullable=True),
    Index("ix_events_tenant_id", "tenant_id", "id"),
    Index("ix_events_tenant_agent", "tenant_id", "agent", "id"),
    Index("ux_events_tenant_key", "tenant_id", "idempotency_key", unique=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("event_id", Integer, nullable=True),
    Column("kind", String(20), nullable=False),
    Column("monitor", String(100), nullable=False),
    Column("agent", String(200), nullable=True),
    Column("severity", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_alerts_tenant_id", "tenant_id", "id"),
)

audit_queue = Table(
    "audit_queue",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("status", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_audit_tenant_status", "tenant_id", "status", "id"),
)

monitor_health = Table(
    "monitor_health",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True),
    Column("monitor", String(100), primary_key=True),
    Column("trusted", Boolean, nullable=False),
    Column("demoted", Boolean, nullable=False),
    Column("honeypots_sent", Integer, nullable=False),
    Column("honeypots_caught", Integer, nullable=False),
    Column("cusum", Float, nullable=False),
    Column("demoted_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

drift_state = Table(
    "drift_state",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True),
    Column("agent", String(200), primary_key=True),
    Column("feature", String(50), primary_key=True),
    Column("detector", String(20), primary_key=True),
    Column("params", JSON, nullable=False),
    Column("last_event_id", Integer, nullable=False),
    Column("n_seen", Integer, nullable=False),
    Column("alarms", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One row per tenant that has ingested: what the writer needs to continue where the last commit
# left off (audit budget, honeypot schedule, newest event id), under a version every commit bumps.
# Every ingest transaction locks it first (SELECT ... FOR UPDATE on PostgreSQL), so the commits of
# one tenant are serialised across ``tripwire serve`` replicas.
tenant_state = Table(
    "tenant_state",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("budget_seen", BigInteger, nullable=False),
    Column("budget_spent", BigInteger, nullable=False),
    Column("budget_cut", Float, nullable=False),
    Column("honeypot_credit", Float, nullable=False),
    Column("honeypot_trials", BigInteger, nullable=False),
    Column("drift_cursor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

monitor_fingerprints = Table(
    "monitor_fingerprints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("monitor", String(100), nullable=False),
    Column("reference", Boolean, nullable=False),
    Column("answers", JSON, nullable=False),
    Column("p_value", Float, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_fingerprints_monitor", "tenant_id", "monitor", "id"),
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``sqlite:///path``, ``postgresql://...`` or a bare file path; pick psycopg 3."""
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UsageError(
            f"--db {url!r} is not a database URL (sqlite:///FILE or postgresql://...)"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise UsageError(f"--db backend {backend!r} is not supported; use sqlite or postgresql")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL keeps every committed transaction
    # across a process kill (the WAL is in the OS page cache); set TRIPWIRE_SQLITE_SYNC=FULL to
    # also survive power loss.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={os.environ.get('TRIPWIRE_SQLITE_SYNC', 'NORMAL')}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def no_autocheckpoint(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """A ``checkout`` listener: this SQLite connection never checkpoints the WAL inside a commit
    (the service's side thread does, with :func:`wal_checkpoint`). The setting lasts as long as
    the connection, so it is sent once per pooled connection, not on every checkout."""
    if record.info.get("tripwire_no_autocheckpoint"):
        return
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")
    record.info["tripwire_no_autocheckpoint"] = True


def wal_checkpoint(conn: Connection, mode: Literal["PASSIVE", "TRUNCATE"]) -> None:
    """Copy SQLite's WAL into the database: PASSIVE never blocks a writer, TRUNCATE also empties
    the WAL file (on stop)."""
    conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")


#: Connections kept open per engine. Every request reads its API key (one indexed query) on a
#: pooled connection while the writer holds its own: the pool must cover the server's concurrent
#: requests, else each request past it opens a connection and closes it on return (on
#: PostgreSQL a new backend process per request; on SQLite a file open and the pragmas), which
#: measured 2-4x slower single-event ingest at 16 connections.
POOL_SIZE = 24
POOL_OVERFLOW = 16


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (normalised); SQLite gets WAL and a busy timeout."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise UsageError(f"--db folder {parent} does not exist")
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )  # fmt: skip
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it costs a round trip per checkout on the ingest path; stale connections are
    # recycled instead, and a failed commit answers 503 without acknowledging anything.
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=1800)


class WriterLock:
    """The one ``tripwire serve`` (or ``watch``) writing a SQLite file: an exclusive ``flock`` on
    ``FILE.writer.lock`` beside it, holding the owner's pid, host and start time. The kernel drops
    the lock when its process ends, ``kill -9`` included, so a stale file never blocks anyone.
    Readers (``keys list``, the dashboard of the running server) never take it."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".writer.lock")
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        import fcntl
        import socket
        import time

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = os.pread(fd, 400, 0).decode("utf-8", "replace").strip() or "another process"
            finally:
                os.close(fd)
            raise UsageError(
                f"{self.path.with_name(self.path.name.removesuffix('.writer.lock'))} already has "
                f"a writer ({owner}); SQLite takes one writer process: stop it, or run several "
                "replicas on PostgreSQL"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(),
            0,
        )
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def writer_lock(url: str) -> WriterLock | None:
    """Take the single-writer lock of a SQLite ``url`` (None for PostgreSQL or ``:memory:``);
    raises :class:`UsageError` naming the owner when another process holds it."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    if not path or path == ":memory:":
        return None
    if not Path(path).parent.exists():
        raise UsageError(f"--db folder {Path(path).parent} does not exist")
    return WriterLock(Path(path)).acquire()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision`` (default: the newest)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # replicas starting together migrate one by one
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(29281, 1)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


__all__ = [
    "alerts",
    "api_keys",
    "audit_queue",
    "current_revision",
    "dashboard_sessions",
    "drift_state",
    "events",
    "make_engine",
    "metadata",
    "migrate",
    "monitor_fingerprints",
    "monitor_health",
    "no_autocheckpoint",
    "normalise_url",
    "tenant_state",
    "tenants",
    "wal_checkpoint",
    "writer_lock",
    "WriterLock",
]
