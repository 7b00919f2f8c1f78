"""Dashboard sessions: signing in with an API key opens a session with a token of its own.

The token is 32 random bytes, kept by the browser in a cookie and by the server only as its
SHA-256, with its tenant, the key it was opened with, an expiry and the scope ``read``. It is not
an API key: the API's ``Authorization: Bearer`` lookup never reads the sessions table, so a stolen
dashboard cookie cannot write events or decide audit items. A session ends at its expiry, on
logout (the row is deleted), or when its key is revoked or its tenant deleted (the lookup joins
both, on every request).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from tripwire.runtime import credentials
from tripwire.runtime.keys import hash_key

SESSION_TTL = timedelta(hours=8)


def open_session(engine: Engine, key_id: int, tenant_id: int, ttl: timedelta = SESSION_TTL) -> str:
    """Store a new read-only session for ``tenant_id`` (opened with key ``key_id``); its token."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        credentials.insert_session(conn, hash_key(token), key_id, tenant_id, now, now + ttl)
    return token


def session_tenant(engine: Engine, token: str) -> int | None:
    """The tenant of a live session token, else None."""
    if not token or len(token) > 100:
        return None
    with engine.connect() as conn:
        return credentials.live_session(conn, hash_key(token), datetime.now(UTC))


def close_session(engine: Engine, token: str) -> None:
    """Delete the session (logout); an unknown token is a no-op."""
    if token and len(token) <= 100:
        with engine.begin() as conn:
            credentials.delete_session(conn, hash_key(token))


__all__ = ["SESSION_TTL", "close_session", "open_session", "session_tenant"]
