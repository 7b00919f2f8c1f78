"""The statements on credentials: API keys and dashboard sessions (the rest are in
:mod:`tripwire.runtime.queries`). A credential is only ever looked up by its SHA-256 hash, and a
lookup answers only while the key is unrevoked and its tenant still exists, so revoking a key or
deleting a tenant takes effect on the very next request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from tripwire.runtime import store

_k, _t, _s = store.api_keys.c, store.tenants.c, store.dashboard_sessions.c

# Built once: the writer runs it on every group commit.
_LIVE_IDS = (
    select(_k.id)
    .join(store.tenants, _t.id == _k.tenant_id)
    .where(_k.id.in_(bindparam("ids", expanding=True)), _k.revoked.is_(False))
)


def insert_api_key(
    conn: Connection, tenant_id: int, prefix: str, key_hash: str, now: datetime
) -> None:
    conn.execute(
        store.api_keys.insert().values(
            tenant_id=tenant_id, prefix=prefix, key_hash=key_hash, created_at=now, revoked=False
        )
    )


def live_key(conn: Connection, key_hash: str) -> tuple[int, int] | None:
    """``(key_id, tenant_id)`` of the unrevoked key with this hash whose tenant exists, else None.
    One indexed read (the unique hash, then the tenant's primary key)."""
    q = (
        select(_k.id, _k.tenant_id)
        .join(store.tenants, _t.id == _k.tenant_id)
        .where(_k.key_hash == key_hash, _k.revoked.is_(False))
    )
    row = conn.execute(q).first()
    return None if row is None else (int(row.id), int(row.tenant_id))


def live_key_ids(conn: Connection, key_ids: set[int]) -> set[int]:
    """Those of ``key_ids`` that are unrevoked keys of existing tenants (one read for a group)."""
    if not key_ids:
        return set()
    return {int(r.id) for r in conn.execute(_LIVE_IDS, {"ids": sorted(key_ids)})}


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    """Every key (id, prefix, tenant name, created, revoked, revoked_at), in id order."""
    q = (
        select(
            _k.id,
            _k.prefix,
            func.coalesce(_t.name, "(deleted tenant)").label("tenant"),
            _k.created_at,
            _k.revoked,
            _k.revoked_at,
        )
        .outerjoin(store.tenants, _t.id == _k.tenant_id)
        .order_by(_k.id)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def keys_matching(conn: Connection, *, key_id: int | None, prefix: str | None) -> list[Any]:
    """The keys with this id or prefix (a prefix is not unique: it is 4 random bytes)."""
    q = select(_k.id, _k.prefix, _k.revoked)
    q = q.where(_k.id == key_id) if key_id is not None else q.where(_k.prefix == prefix)
    return list(conn.execute(q.order_by(_k.id)).all())


def revoke_key(conn: Connection, key_id: int, now: datetime) -> None:
    """Mark a key revoked and end the dashboard sessions opened with it."""
    conn.execute(update(store.api_keys).where(_k.id == key_id).values(revoked=True, revoked_at=now))
    conn.execute(delete(store.dashboard_sessions).where(_s.key_id == key_id))


def insert_session(
    conn: Connection, token_hash: str, key_id: int, tenant_id: int, now: datetime, expires: datetime
) -> None:
    """A read-only dashboard session; expired sessions are swept at the same time."""
    conn.execute(delete(store.dashboard_sessions).where(_s.expires_at < now))
    conn.execute(
        store.dashboard_sessions.insert().values(
            token_hash=token_hash,
            key_id=key_id,
            tenant_id=tenant_id,
            scope="read",
            created_at=now,
            expires_at=expires,
        )
    )


def live_session(conn: Connection, token_hash: str, now: datetime) -> int | None:
    """The tenant of an unexpired session whose key is unrevoked and whose tenant exists."""
    q = (
        select(_s.tenant_id)
        .join(store.api_keys, _k.id == _s.key_id)
        .join(store.tenants, _t.id == _s.tenant_id)
        .where(
            _s.token_hash == token_hash,
            _s.expires_at > now,
            _s.scope == "read",
            _k.revoked.is_(False),
        )
    )
    tid = conn.execute(q).scalar()
    return None if tid is None else int(tid)


def delete_session(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(store.dashboard_sessions).where(_s.token_hash == token_hash))


__all__ = [
    "delete_session",
    "insert_api_key",
    "insert_session",
    "keys_matching",
    "list_keys",
    "live_key",
    "live_session",
    "revoke_key",
]
