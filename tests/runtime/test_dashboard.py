"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real server.
It signs in with an API key (opening a read-only session of its own) and shows alerts, the audit
queue, monitor health and drift charts, with no request leaving the loopback server (it works
offline); it signs out server-side, refuses cross-site forms and being framed, and every
response carries the security headers."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tripwire.runtime import store
from tripwire.runtime.keys import create_key
from tripwire.runtime.traffic import attack_events, honest_event

from .conftest import migrated
from .server import Server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HEADERS = {
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def assert_hardened(headers: Any) -> None:
    for name, value in HEADERS.items():
        assert headers.get(name) == value, (name, dict(headers))
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/services.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _sessions(engine: Any) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(store.dashboard_sessions)
        return int(conn.execute(q).scalar_one())


@pytest.mark.browser
def test_dashboard_in_chromium(sqlite_url: str, tmp_path: Path, browser: Any) -> None:
    engine = migrated(sqlite_url)
    key = create_key(engine, "web")
    srv = Server(sqlite_url, tmp_path / "server.log").start()
    try:
        h = {"Authorization": f"Bearer {key}"}
        rng = random.Random(0)
        honest = [honest_event(rng, "agent-web") for _ in range(120)]
        r = httpx.post(
            f"{srv.url}/v1/events", headers=h, json={"events": honest + attack_events("agent-web")}
        )
        assert r.status_code == 200
        context = browser.new_context()
        page = context.new_page()
        hosts: set[str] = set()
        page.on("request", lambda req: hosts.add(httpx.URL(req.url).host))
        first = page.goto(srv.url + "/")
        assert first is not None and first.status == 200
        assert_hardened(first.headers)
        page.fill("#key", "tw_wrong_key")
        page.click("#signin")
        assert "not valid" in page.inner_text("#error")
        page.fill("#key", key)
        with page.expect_response(lambda resp: resp.url.endswith("/login")) as login:
            page.click("#signin")
        assert_hardened(login.value.headers)
        page.wait_for_selector("#monitors")
        assert page.title() == "tripwire runtime"
        # The inline stylesheet is admitted by the CSP nonce (the body's 14px is its rule).
        assert page.eval_on_selector("body", "e => getComputedStyle(e).fontSize") == "14px"
        mon = page.locator('#monitors tr[data-monitor="rules"]')
        assert "yes" in mon.inner_text() and "100%" in mon.inner_text()
        alerts = page.inner_text("#alerts")
        assert "weight-exfiltration" in alerts and "oversight-config" in alerts
        assert page.locator('#alerts tr[data-kind="verdict"]').count() >= 10
        assert page.locator("#audit tr").count() >= 10
        chart = page.locator('#drift figure[data-agent="agent-web"]')
        assert chart.count() == 1 and chart.locator("polyline").count() == 1
        assert "events: 137" in page.inner_text("#n-events")

        # The cookie is a session token of its own, not the key: HttpOnly, Strict, expiring.
        cookie = next(c for c in context.cookies() if c["name"] == "tripwire_session")
        assert cookie["value"] != key and key not in str(context.cookies())
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert 7 * 3600 < cookie["expires"] - time.time() <= 8 * 3600 + 60
        token = cookie["value"]
        assert _sessions(engine) == 1
        # It reads the dashboard, and nothing else: it is no API key.
        jar = {"tripwire_session": token}
        assert "monitors" in httpx.get(srv.url + "/", cookies=jar).text
        bearer = {"Authorization": f"Bearer {token}"}
        ev = {"agent": "x", "type": "message", "content": "hi"}
        assert httpx.post(f"{srv.url}/v1/events", headers=bearer, json=ev).status_code == 401
        assert httpx.get(f"{srv.url}/v1/stats", headers=bearer).status_code == 401
        assert httpx.post(f"{srv.url}/v1/audit/1", headers=bearer, json={}).status_code == 401

        # Sign out: the session row is deleted, so even a copy of the cookie is dead.
        with page.expect_response(lambda resp: resp.url.endswith("/logout")) as out:
            page.click("#signout")
        assert_hardened(out.value.headers)
        page.wait_for_selector("#signin")
        assert _sessions(engine) == 0
        assert "tripwire_session" not in {c["name"] for c in context.cookies()}
        assert "signin" in httpx.get(srv.url + "/", cookies=jar).text
        context.close()
        assert hosts == {"127.0.0.1"}
    finally:
        srv.stop()
        engine.dispose()


@pytest.mark.browser
def test_cross_site_login_and_framing_are_refused(
    sqlite_url: str, tmp_path: Path, browser: Any
) -> None:
    engine = migrated(sqlite_url)
    key = create_key(engine, "web")
    srv = Server(sqlite_url, tmp_path / "server.log").start()
    try:
        page = browser.new_page()
        page.goto(srv.url + "/")  # the victim has the dashboard's CSRF cookie
        # A page of another origin posts a sign-in form to the dashboard (login CSRF).
        page.set_content(
            f'<form id="f" method="post" action="{srv.url}/login">'
            f'<input name="key" value="{key}"><input name="csrf" value="guess"></form>'
        )
        with page.expect_response(lambda resp: resp.url.endswith("/login")) as login:
            page.eval_on_selector("#f", "f => f.submit()")
        assert login.value.status == 403
        assert "did not come from this dashboard" in page.inner_text("#error")
        assert _sessions(engine) == 0
        # Framed by another origin: the browser refuses to render it (frame-ancestors, XFO).
        page.set_content(f'<iframe id="fr" src="{srv.url}/"></iframe>')
        page.wait_for_timeout(1000)
        frame = page.frame_locator("#fr")
        assert frame.locator("#signin").count() == 0
        page.close()
    finally:
        srv.stop()
        engine.dispose()


def test_login_checks_origin_and_csrf_token(sqlite_url: str, tmp_path: Path) -> None:
    """The same checks without a browser: a token without the cookie, a cookie without the
    same origin, no Origin nor Referer, and plain http to a non-loopback host all fail."""
    engine = migrated(sqlite_url)
    key = create_key(engine, "web")
    srv = Server(sqlite_url, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=srv.url) as c:
            page = c.get("/")
            assert_hardened(page.headers)
            csrf = c.cookies["tripwire_csrf"]
            assert f'value="{csrf}"' in page.text
            own = {"Origin": srv.url}
            form = {"key": key, "csrf": csrf}
            assert c.post("/login", data={"key": key}, headers=own).status_code == 403
            bad = {"Origin": "http://evil.example"}
            assert c.post("/login", data=form, headers=bad).status_code == 403
            assert c.post("/login", data=form).status_code == 403  # neither Origin nor Referer
            lan = {"Origin": "http://10.0.0.7:8400", "Host": "10.0.0.7:8400"}
            r = c.post("/login", data=form, headers=lan)
            assert r.status_code == 400 and "https" in r.text
            assert _sessions(engine) == 0
            r = c.post("/login", data=form, headers={"Referer": srv.url + "/"})
            assert r.status_code == 303 and _sessions(engine) == 1
            assert_hardened(r.headers)
            set_cookie = r.headers["set-cookie"].lower()
            assert "httponly" in set_cookie and "samesite=strict" in set_cookie
            assert "max-age=28800" in set_cookie
            # Logout is a form too: refused cross-site, and the session survives that.
            c.cookies.set("tripwire_session", r.cookies["tripwire_session"])
            new_csrf = r.cookies["tripwire_csrf"]
            assert c.post("/logout", data={"csrf": new_csrf}, headers=bad).status_code == 403
            assert _sessions(engine) == 1
            assert c.post("/logout", data={"csrf": new_csrf}, headers=own).status_code == 303
            assert _sessions(engine) == 0
    finally:
        srv.stop()
        engine.dispose()


def test_over_https_cookies_are_secure_and_die_with_their_key(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from tripwire.runtime.app import create_app
    from tripwire.runtime.keys import revoke_key
    from tripwire.runtime.sessions import open_session, session_tenant

    engine = migrated(sqlite_url)
    key = create_key(engine, "web")
    with TestClient(create_app(engine), base_url="https://dash.example") as c:
        page = c.get("/")
        assert "secure" in page.headers["set-cookie"].lower()
        csrf = c.cookies["__Host-tripwire_csrf"]
        form = {"key": key, "csrf": csrf}
        own = {"Origin": "https://dash.example"}
        r = c.post("/login", data=form, headers=own, follow_redirects=False)
        assert r.status_code == 303
        cookies = r.headers.get_list("set-cookie")
        session = next(v for v in cookies if v.startswith("__Host-tripwire_session="))
        assert "secure" in session.lower() and "path=/" in session.lower()
        assert "monitors" in c.get("/").text
        revoke_key(engine, key.split("_")[1])
        assert "signin" in c.get("/").text  # the session died with its key
    # An expired session is refused.
    with engine.begin() as conn:
        kid, tid = conn.execute(select(store.api_keys.c.id, store.api_keys.c.tenant_id)).first()
    from datetime import timedelta

    assert session_tenant(engine, open_session(engine, kid, tid, timedelta(seconds=-1))) is None
    engine.dispose()
