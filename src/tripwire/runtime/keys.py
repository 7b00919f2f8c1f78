"""API keys: ``tw_<prefix>_<secret>``, stored as a SHA-256 hash; one tenant per key.

The secret is 32 random bytes, so a plain SHA-256 is enough (a slow password hash only matters
for low-entropy secrets). The key is shown once, at creation; only its prefix is ever logged.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from tripwire.errors import UsageError
from tripwire.runtime import store


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(engine: Engine, tenant: str) -> str:
    """Create ``tenant`` if new, add a key for it, return the key (the only time it is seen)."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > 200:
        raise UsageError("tenant name must be 1-200 characters")
    prefix = secrets.token_hex(4)
    key = f"tw_{prefix}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        tid = conn.execute(
            select(store.tenants.c.id).where(store.tenants.c.name == tenant)
        ).scalar()
        if tid is None:
            tid = conn.execute(
                store.tenants.insert()
                .values(name=tenant, created_at=now)
                .returning(store.tenants.c.id)
            ).scalar_one()
        conn.execute(
            store.api_keys.insert().values(
                tenant_id=tid, prefix=prefix, key_hash=hash_key(key), created_at=now, revoked=False
            )
        )
    return key


def tenant_for(engine: Engine, key: str) -> int | None:
    """The tenant id of a valid, unrevoked key, else None."""
    if not key.startswith("tw_") or len(key) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(store.api_keys.c.tenant_id, store.api_keys.c.revoked).where(
                store.api_keys.c.key_hash == hash_key(key)
            )
        ).first()
    if row is None or row.revoked:
        return None
    return int(row.tenant_id)


__all__ = ["create_key", "hash_key", "tenant_for"]
