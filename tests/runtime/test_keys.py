"""API keys as a gateway treats them: ``keys revoke`` takes effect on the very next request
(reads look the key up each time; ingest's cached key is confirmed inside the writer's commit,
so no cache keeps a revoked key alive), a key whose tenant was deleted is refused with 401 and
stores nothing without failing the others in its commit group, and ``keys list`` shows each
key's status."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from tripwire.cli import app
from tripwire.runtime import store
from tripwire.runtime.keys import create_key

from .conftest import Api, migrated
from .server import Server

EV = {"agent": "coder", "type": "message", "content": "hello"}
runner = CliRunner()


def _prefix(key: str) -> str:
    return key.split("_")[1]


def _stored(api: Api) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(store.events)).scalar_one())


def test_a_revoked_key_is_refused_on_the_next_request(api: Api) -> None:
    assert api.get("/v1/stats").status_code == 200
    assert api.post("/v1/events", json=EV).status_code == 200  # now in ingest's key cache
    assert api.client.app.state.keys.hit(api.key) is not None
    with api.engine.begin() as conn:
        conn.execute(update(store.api_keys).values(revoked=True))
    r = api.get("/v1/stats")
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    r = api.post("/v1/events", json=EV)  # the cache still has it: the writer's commit refuses
    assert r.status_code == 401 and r.json() == {"error": "invalid or revoked API key"}
    assert r.headers["www-authenticate"] == "Bearer"
    assert api.client.app.state.keys.hit(api.key) is None  # and it left the cache
    assert api.post("/v1/events", json=EV).status_code == 401
    assert _stored(api) == 1


def _delete_tenant(api: Api, name: str) -> None:
    """Delete a tenant row behind the service's back, leaving its key row (as an operator's
    hand-run SQL would: SQLite's foreign keys off, PostgreSQL's triggers off)."""
    with api.engine.begin() as conn:
        if api.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(store.tenants.delete().where(store.tenants.c.name == name))
    if api.engine.dialect.name == "sqlite":
        api.engine.dispose()  # the pooled connection with foreign keys off is not reused


def test_a_deleted_tenants_key_gets_401_and_spares_the_commit_group(api: Api) -> None:
    gone = api.new_key("gone")
    h_gone = {"Authorization": f"Bearer {gone}"}
    assert api.client.get("/v1/stats", headers=h_gone).is_success
    assert api.client.post("/v1/events", headers=h_gone, json=EV).is_success  # cached
    _delete_tenant(api, "gone")

    def post(key: str) -> int:
        h = {"Authorization": f"Bearer {key}"}
        return int(api.client.post("/v1/events", headers=h, json=EV).status_code)

    # Both tenants write at once, so their requests share commit groups.
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, [gone, api.key] * 20))
    assert codes[0::2] == [401] * 20
    assert codes[1::2] == [200] * 20
    assert _stored(api) == 1 + 20


def test_keys_revoke_against_a_running_server(sqlite_url: str, tmp_path: Path) -> None:
    engine = migrated(sqlite_url)
    key, other = create_key(engine, "ops"), create_key(engine, "ops")
    engine.dispose()
    srv = Server(sqlite_url, tmp_path / "server.log").start()
    try:
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.post(f"{srv.url}/v1/events", headers=h, json=EV).status_code == 200
        cmd = [sys.executable, "-m", "tripwire.cli", "keys", "revoke", _prefix(key)]
        r = subprocess.run([*cmd, "--db", sqlite_url], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("\n") == 1 and "revoked" in r.stdout and _prefix(key) in r.stdout
        assert httpx.post(f"{srv.url}/v1/events", headers=h, json=EV).status_code == 401
        h2 = {"Authorization": f"Bearer {other}"}
        assert httpx.post(f"{srv.url}/v1/events", headers=h2, json=EV).status_code == 200
    finally:
        srv.stop()
    r = runner.invoke(app, ["keys", "list", "--db", sqlite_url, "--json"])
    assert r.exit_code == 0, r.output
    listed = {k["prefix"]: k for k in json.loads(r.stdout)}
    assert listed[_prefix(key)]["status"] == "revoked" and listed[_prefix(key)]["revoked_at"]
    assert listed[_prefix(other)]["status"] == "active"
    table = runner.invoke(app, ["keys", "list", "--db", sqlite_url]).stdout
    assert "revoked" in table and "active" in table and "ops" in table
    # Revoking again changes nothing and says so.
    again = runner.invoke(app, ["keys", "revoke", "1", "--db", sqlite_url])
    assert again.exit_code == 0 and "already revoked" in again.stdout


def test_keys_revoke_bad_input_exits_2_and_changes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    engine = migrated(sqlite_url)
    key = create_key(engine, "ops")
    for ident, says in [("99", "no API key"), ("0badf00d", "no API key"), ("x y", "not a key")]:
        r = runner.invoke(app, ["keys", "revoke", ident, "--db", sqlite_url])
        assert r.exit_code == 2 and says in r.stderr, (ident, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stdout == ""
    # Two keys that share a prefix: the prefix is ambiguous, the id is not.
    with engine.begin() as conn:
        conn.execute(update(store.api_keys).values(prefix="0badf00d"))
    create_key(engine, "ops")
    with engine.begin() as conn:
        conn.execute(update(store.api_keys).values(prefix="0badf00d"))
    r = runner.invoke(app, ["keys", "revoke", "0badf00d", "--db", sqlite_url])
    assert r.exit_code == 2 and "revoke one by its id" in r.stderr
    with engine.connect() as conn:
        assert not any(conn.execute(select(store.api_keys.c.revoked)).scalars())
    assert key
    missing = tmp_path / "missing.db"
    r = runner.invoke(app, ["keys", "revoke", "1", "--db", f"sqlite:///{missing}"])
    assert r.exit_code == 2 and "no such database" in r.stderr and not missing.exists()
    engine.dispose()
