"""The writer's group commit (issue 11, findings 2 and 5): a request the database refuses fails
alone, a waiter that gives up never fails the others, and requests sharing an idempotency key are
never committed in one group (the later one is answered from the store).

A gate monitor holds the writer inside its current group, so that the next requests queue up and
are committed together, as concurrent requests are under load.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, select

from tripwire.runtime import store
from tripwire.runtime.errors import StoreUnavailable
from tripwire.runtime.events import Event, MonitorResult
from tripwire.runtime.keys import create_key
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.service import Service

from .conftest import migrated


@dataclass
class Gate:
    """A monitor that holds the writer on an event whose content is ``"gate"``."""

    name: str = "gate"
    trusted: bool = True
    threshold: float = 0.5
    entered: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)

    def check(self, event: Event) -> MonitorResult:
        if event.content == "gate":
            self.entered.set()
            self.opened.wait(20)
        return MonitorResult(self.name, 0.0)

    check_isolated = check


@dataclass
class Writer:
    service: Service
    engine: Engine
    tenant: int
    gate: Gate

    def hold(self) -> None:
        """Park the writer in a group of its own; the next submissions queue behind it."""
        self.service.submit(self.tenant, [Event("gatekeeper", "message", "gate")])
        assert self.gate.entered.wait(10)

    def contents(self) -> list[str]:
        e = store.events.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(e.content).where(e.agent != "gatekeeper").order_by(e.id))
            return [c for (c,) in rows]


@pytest.fixture
def writer(db_url: str) -> Iterator[Writer]:
    engine = migrated(db_url)
    create_key(engine, "t")
    with engine.connect() as conn:
        tid = conn.execute(select(store.tenants.c.id)).scalar_one()
    gate = Gate()
    config = RuntimeConfig(drift=False, honeypot_rate=0.0, extra_monitors=[lambda: gate])
    service = Service(engine, config, calibrate="inline")
    try:
        yield Writer(service, engine, tid, gate)
    finally:
        gate.opened.set()
        service.stop()
        engine.dispose()


def ev(content: str, key: str | None = None) -> Event:
    return (
        Event("agent", "message", content)
        if key is None
        else Event("agent", "message", content, key=key)
    )


def test_a_request_the_database_refuses_fails_alone_not_its_group(writer: Writer) -> None:
    """Tenant 999 does not exist: its insert breaks a foreign key on both backends, inside the
    same group as two good requests. The group is retried request by request."""
    writer.hold()
    before = writer.service.submit(writer.tenant, [ev("before")])
    orphan = writer.service.submit(999, [ev("orphan")])
    after = writer.service.submit(writer.tenant, [ev("after"), ev("after 2")])
    writer.gate.opened.set()
    assert len(before.result(10)) == 1 and len(after.result(10)) == 2
    with pytest.raises(Exception, match="(?i)foreign key"):
        orphan.result(10)
    assert writer.contents() == ["before", "after", "after 2"]


def test_a_waiter_that_gives_up_never_fails_its_group(writer: Writer) -> None:
    """A commit that times out answers 503 saying the outcome is unknown; the abandoned request
    is then skipped (it never reached the writer), and the request committed with it succeeds."""

    async def go() -> tuple[BaseException | None, list[dict[str, object]]]:
        writer.hold()
        gave_up = asyncio.ensure_future(
            writer.service.commit(writer.tenant, [ev("gave up")], timeout=0.3)
        )
        waits = asyncio.ensure_future(writer.service.commit(writer.tenant, [ev("waits")]))
        await asyncio.wait([gave_up], timeout=10)
        writer.gate.opened.set()
        return gave_up.exception(), await waits

    err, out = asyncio.run(go())
    assert len(out) == 1
    assert writer.contents() == ["waits"]
    assert isinstance(err, StoreUnavailable)
    assert "may or may not be stored; a retry may store them twice" in str(err)


def test_requests_sharing_a_key_in_one_group_store_it_once(writer: Writer) -> None:
    writer.hold()
    first = writer.service.submit(writer.tenant, [ev("a", "k#0"), ev("b", "k#1")])
    retry = writer.service.submit(writer.tenant, [ev("a", "k#0"), ev("b", "k#1")])
    other = writer.service.submit(writer.tenant, [ev("c")])
    writer.gate.opened.set()
    a, b = first.result(10), retry.result(10)
    assert a == b and len(a) == 2 and len(other.result(10)) == 1
    assert sorted(writer.contents()) == ["a", "b", "c"]
