"""Alembic environment: runs on the connection :func:`tripwire.runtime.store.migrate` passes in."""

from __future__ import annotations

from alembic import context

from tripwire.runtime.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached from the alembic CLI without a bind
    raise RuntimeError("run migrations through tripwire.runtime.store.migrate(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
