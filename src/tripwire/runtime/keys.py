"""API keys: ``tw_<prefix>_<secret>``, stored as a SHA-256 hash; one tenant per key.

The secret is 32 random bytes, so a plain SHA-256 is enough (a slow password hash only matters
for low-entropy secrets). The key is shown once, at creation; only its prefix is ever logged.
The API looks keys up through a :class:`KeyCache`, so a request costs no query once its key has
been seen in the last 30 seconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import Engine

from tripwire.errors import UsageError
from tripwire.runtime import queries

#: A tenant name: 1-64 letters, digits and ``. _ - @ :``, starting with a letter or digit.
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}")


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a valid tenant name (:data:`TENANT_NAME`), else one line saying so."""
    if not TENANT_NAME.fullmatch(tenant):
        raise UsageError(
            f"tenant name {tenant!r} is not valid: use 1-64 letters, digits and . _ - @ :, "
            "starting with a letter or digit"
        )
    return tenant


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(engine: Engine, tenant: str) -> str:
    """Create ``tenant`` if new, add a key for it, return the key (the only time it is seen)."""
    check_tenant(tenant)
    prefix = secrets.token_hex(4)
    key = f"tw_{prefix}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        tid = queries.ensure_tenant(conn, tenant, now)
        queries.insert_api_key(conn, tid, prefix, hash_key(key), now)
    return key


def tenant_for(engine: Engine, key: str) -> int | None:
    """The tenant id of a valid, unrevoked key, else None."""
    if not key.startswith("tw_") or len(key) > 200:
        return None
    with engine.connect() as conn:
        owner = queries.key_owner(conn, hash_key(key))
    if owner is None or owner[1]:
        return None
    return owner[0]


class KeyCache:
    """:func:`tenant_for` with valid keys remembered for ``ttl`` seconds (by hash, never the key);
    a revoked key keeps working for at most ``ttl``."""

    def __init__(self, engine: Engine, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._hits: dict[str, tuple[int, float]] = {}

    def tenant(self, key: str) -> int | None:
        h = hash_key(key)
        hit = self._hits.get(h)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        tid = tenant_for(self.engine, key)
        if tid is not None:
            self._hits[h] = (tid, now + self.ttl)
        return tid


__all__ = ["TENANT_NAME", "KeyCache", "check_tenant", "create_key", "hash_key", "tenant_for"]
