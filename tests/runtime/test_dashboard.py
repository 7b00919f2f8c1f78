"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real server.
It signs in with an API key and shows alerts, the audit queue, monitor health and drift charts,
with no request leaving the loopback server (it works offline)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import httpx
import pytest

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


@pytest.mark.browser
def test_dashboard_in_chromium(sqlite_url: str, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/services.sh)")
    from playwright.sync_api import sync_playwright

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
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            hosts: set[str] = set()
            page.on("request", lambda req: hosts.add(httpx.URL(req.url).host))
            page.goto(srv.url + "/")
            page.fill("#key", "tw_wrong_key")
            page.click("#signin")
            assert "not valid" in page.inner_text("#error")
            page.fill("#key", key)
            page.click("#signin")
            page.wait_for_selector("#monitors")
            assert page.title() == "tripwire runtime"
            mon = page.locator('#monitors tr[data-monitor="rules"]')
            assert "yes" in mon.inner_text() and "100%" in mon.inner_text()
            alerts = page.inner_text("#alerts")
            assert "weight-exfiltration" in alerts and "oversight-config" in alerts
            assert page.locator('#alerts tr[data-kind="verdict"]').count() >= 10
            assert page.locator("#audit tr").count() >= 10
            chart = page.locator('#drift figure[data-agent="agent-web"]')
            assert chart.count() == 1 and chart.locator("polyline").count() == 1
            assert "events: 137" in page.inner_text("#n-events")
            browser.close()
        assert hosts == {"127.0.0.1"}
    finally:
        srv.stop()
        engine.dispose()
