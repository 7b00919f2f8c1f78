"""The runtime room's public API, pinned: what each package's ``__all__`` lists, that every listed
name resolves, and that the read routes document their answers in the OpenAPI schema."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tripwire.runtime.app import create_app

from .conftest import migrated

SURFACE = {
    "tripwire.runtime": [
        "Alert",
        "ApiError",
        "Calibrator",
        "Event",
        "EventIn",
        "Monitor",
        "MonitorResult",
        "Pipeline",
        "RuntimeConfig",
        "StoreUnavailable",
        "Thresholds",
        "TraceError",
        "UnsupportedMediaType",
        "UpstreamError",
        "Verdict",
        "aggregate",
        "calibrate_on_honest",
    ],
    "tripwire.runtime.api": ["ROUTERS"],
    "tripwire.runtime.monitors": [
        "LLMMonitor",
        "Monitor",
        "Policy",
        "ProbeMonitor",
        "Rule",
        "RulesMonitor",
        "load_policy",
        "parse_policy",
    ],
    "tripwire.runtime.errors": [
        "ApiError",
        "KeyRefused",
        "StoreRejected",
        "StoreUnavailable",
        "TraceError",
        "UnsupportedMediaType",
        "UpstreamError",
    ],
    "tripwire.runtime.app": ["create_app", "evaluation_attributes"],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_api_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__ == SURFACE[module]
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_the_package_imports_no_web_stack() -> None:
    """``import tripwire.runtime`` (done by every ``tripwire`` command) leaves the service out."""
    heavy = ["fastapi", "tripwire.runtime.app", "tripwire.runtime.service", "uvicorn"]
    code = f"import sys, tripwire.runtime; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


READ_ROUTES = {
    ("get", "/healthz"): "Health",
    ("get", "/v1/events"): "EventPage",
    ("get", "/v1/alerts"): "AlertPage",
    ("get", "/v1/monitors"): "MonitorList",
    ("get", "/v1/audit"): "AuditQueue",
    ("post", "/v1/audit/{item_id}"): "AuditDecided",
    ("get", "/v1/drift"): "DriftView",
    ("get", "/v1/stats"): "Stats",
    ("post", "/v1/events"): "EventsAccepted",
}


def test_openapi_documents_every_answer(tmp_path: Path) -> None:
    engine = migrated(f"sqlite:///{tmp_path / 'oa.db'}")
    schema = create_app(engine).openapi()
    engine.dispose()
    for (method, path), model in READ_ROUTES.items():
        ok = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{model}"}, (method, path)
    fp = schema["paths"]["/v1/monitors/{name}/fingerprint"]["post"]["responses"]["200"]
    refs = {
        x["$ref"].rsplit("/", 1)[1] for x in fp["content"]["application/json"]["schema"]["anyOf"]
    }
    assert refs == {"FingerprintReference", "FingerprintComparison"}
    events = schema["components"]["schemas"]["StoredEvent"]["properties"]
    assert list(events)[:3] == ["id", "agent", "session"] and "evaluation" in events
    assert schema["paths"]["/v1/traces"]["post"]["responses"].keys() >= {"400", "415"}
