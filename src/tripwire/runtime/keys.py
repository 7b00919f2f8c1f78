"""API keys: ``tw_<prefix>_<secret>``, stored as a SHA-256 hash; one tenant per key.

The secret is 32 random bytes, so a plain SHA-256 is enough (a slow password hash only matters
for low-entropy secrets). The key is shown once, at creation; only its prefix is ever logged.

Reads and the dashboard look the key up in the database on every request (one read by the
unique hash index, joined to the tenant), so ``tripwire keys revoke`` takes effect on the next
request, as at an API gateway. The ingest routes, the hot path, find the key in a small
in-process cache instead (:meth:`Keys.cached`, filled by that same read on a miss) and hand its
id to the writer, whose group transaction confirms every key of the group is still live in one
read: a revoked key, or one whose tenant was deleted, stores nothing from the next commit on,
is answered 401, and leaves the cache. The guarantee is the same as a per-request look-up (no
event of a revoked key is stored after the revocation commits) at one read per group commit
instead of one per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from tripwire.errors import UsageError
from tripwire.runtime import credentials, queries

KEY_PREFIX = "tw_"

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
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        tid = queries.ensure_tenant(conn, tenant, now)
        credentials.insert_api_key(conn, tid, prefix, hash_key(key), now)
    return key


def key_for(engine: Engine, key: str) -> tuple[int, int] | None:
    """``(key_id, tenant_id)`` of a valid, unrevoked key of an existing tenant, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    with engine.connect() as conn:
        return credentials.live_key(conn, hash_key(key))


def tenant_for(engine: Engine, key: str) -> int | None:
    """The tenant id of a valid, unrevoked key of an existing tenant, else None."""
    found = key_for(engine, key)
    return None if found is None else found[1]


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    """Every key: id, prefix, tenant, created_at, status (``active`` or ``revoked``), revoked_at."""
    with engine.connect() as conn:
        rows = credentials.list_keys(conn)
    for r in rows:
        r["status"] = "revoked" if r.pop("revoked") else "active"
    return rows


def _parse_ident(ident: str) -> tuple[int | None, str | None]:
    """A key id (digits), a prefix (8 hex digits) or a whole key (its prefix is taken)."""
    text = ident.strip()
    if text.isdigit():
        return int(text), None
    prefix = text[len(KEY_PREFIX) :].split("_", 1)[0] if text.startswith(KEY_PREFIX) else text
    if len(prefix) == 8 and all(c in "0123456789abcdef" for c in prefix):
        return None, prefix
    raise UsageError(f"{text!r} is not a key id or prefix; `tripwire keys list` shows them")


def revoke_key(engine: Engine, ident: str) -> tuple[int, str, bool]:
    """Revoke the key with this id or prefix; ``(id, prefix, was_already_revoked)``.
    Unknown or ambiguous identifiers raise :class:`UsageError` and change nothing."""
    key_id, prefix = _parse_ident(ident)
    with engine.begin() as conn:
        found = credentials.keys_matching(conn, key_id=key_id, prefix=prefix)
        if not found:
            raise UsageError(f"no API key {ident.strip()!r}; `tripwire keys list` shows them")
        if len(found) > 1:
            ids = ", ".join(str(r.id) for r in found)
            raise UsageError(f"prefix {prefix} matches keys {ids}; revoke one by its id")
        row = found[0]
        if not row.revoked:
            credentials.revoke_key(conn, int(row.id), datetime.now(UTC))
    return int(row.id), str(row.prefix), bool(row.revoked)


class Keys:
    """The API's key lookups, on ``engine``: :meth:`tenant` and :meth:`key` read the database
    every time; :meth:`cached` answers the ingest routes from memory (their writer confirms the
    key inside its commit, :meth:`forget` drops a key it refused)."""

    #: Keys held in memory at most (a full cache is emptied: the next requests read again).
    CACHE_SIZE = 10_000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[str, tuple[int, int]] = {}

    def hit(self, key: str) -> tuple[int, int] | None:
        """``(key_id, tenant_id)`` of a key already in the cache, else None (no database read)."""
        return self._cache.get(hash_key(key))

    def cached(self, key: str) -> tuple[int, int] | None:
        """:meth:`hit`, else the database's answer, remembered when the key is live."""
        h = hash_key(key)
        found = self._cache.get(h)
        if found is None:
            found = key_for(self.engine, key)
            if found is not None:
                if len(self._cache) >= self.CACHE_SIZE:
                    self._cache.clear()
                self._cache[h] = found
        return found

    def forget(self, key: str) -> None:
        """Drop ``key`` from the cache (the writer found it revoked)."""
        self._cache.pop(hash_key(key), None)

    def tenant(self, key: str) -> int | None:
        return tenant_for(self.engine, key)

    def key(self, key: str) -> tuple[int, int] | None:
        return key_for(self.engine, key)


__all__ = [
    "KEY_PREFIX",
    "TENANT_NAME",
    "Keys",
    "check_tenant",
    "create_key",
    "hash_key",
    "key_for",
    "list_keys",
    "revoke_key",
    "tenant_for",
]
