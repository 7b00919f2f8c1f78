"""Schemathesis against the running service's OpenAPI: generated (valid and invalid) requests to
every operation, bounded in count; none may get a 5xx."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripwire.runtime.keys import create_key

from .conftest import migrated
from .server import Server

EXAMPLES = 60


def test_no_operation_answers_5xx(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    engine = migrated(url)
    key = create_key(engine, "fuzz")
    srv = Server(url, tmp_path / "server.log").start()
    try:
        schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
        ops = [r.ok() for r in schema.get_all_operations()]
        paths = {f"{op.method.upper()} {op.path}" for op in ops}
        assert {"POST /v1/events", "POST /v1/traces", "GET /v1/alerts"} <= paths
        failures: list[str] = []
        statuses: Counter[int] = Counter()
        for op in ops:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(
                case=st.one_of(
                    op.as_strategy(schemathesis.GenerationMode.POSITIVE),
                    op.as_strategy(schemathesis.GenerationMode.NEGATIVE),
                ),
                authed=st.booleans(),
            )
            def run(case: schemathesis.Case, authed: bool) -> None:
                headers = {"Authorization": f"Bearer {key}"} if authed else {}
                resp = case.call(base_url=srv.url, headers=headers, timeout=10)
                statuses[resp.status_code] += 1
                if resp.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {resp.status_code}: "
                        f"{resp.text[:200]}"
                    )

            run()
        print("fuzz statuses:", dict(statuses))
        assert failures == []
        # The fuzz got past auth and validation for real, and was also refused for real.
        assert statuses[200] >= 30 and statuses[401] >= 50, statuses
        assert statuses[422] + statuses[400] >= 30, statuses
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        srv.stop()
        engine.dispose()
