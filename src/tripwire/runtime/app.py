"""The FastAPI application: ingest, reads, audit queue, dashboard; built by :func:`create_app`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import Engine, func, select, text, update
from starlette.exceptions import HTTPException as StarletteHTTPException

from tripwire.errors import DataError
from tripwire.runtime import store
from tripwire.runtime.events import Event, EventIn
from tripwire.runtime.keys import hash_key, tenant_for
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.service import Service

log = logging.getLogger("tripwire.runtime")

MAX_BODY_BYTES = 1_048_576
MAX_BATCH = 1000
COOKIE = "tripwire_key"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes gets 413, whatever its framing."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def _reject(self, send: Send) -> None:
        body = b'{"error":"request body too large (limit %d bytes)"}' % self.limit
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > self.limit:
                        await self._reject(send)
                        return
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class EventBatch(BaseModel):
    """Several events in one request (at most 1000); committed together."""

    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class Accepted(BaseModel):
    id: int
    score: float
    action: Literal["allow", "flag", "defer", "block"]
    audit: bool
    monitors: list[dict[str, Any]]


class EventsAccepted(BaseModel):
    accepted: int
    events: list[Accepted]


class AuditDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["confirmed", "dismissed"]
    note: str | None = Field(default=None, max_length=2000)


_EVENTS: TypeAdapter[EventIn | EventBatch] = TypeAdapter(EventIn | EventBatch)
_EVENTS_SCHEMA = _EVENTS.json_schema(ref_template="#/components/schemas/{model}")
_EVENTS_DEFS = _EVENTS_SCHEMA.pop("$defs", {})


def evaluation_attributes(
    score: float, action: str, verdicts: list[dict[str, Any]]
) -> dict[str, Any]:
    """A verdict as OpenTelemetry GenAI evaluation attributes, to attach to the source span."""
    reasons = sorted({r for v in verdicts for r in v.get("reasons", [])})
    return {
        "gen_ai.evaluation.name": "tripwire",
        "gen_ai.evaluation.score.value": score,
        "gen_ai.evaluation.score.label": action,
        "gen_ai.evaluation.explanation": ", ".join(reasons) or "no rule matched",
    }


def _one_line(exc: RequestValidationError) -> str:
    """The first few validation errors as one line. For the event-or-batch body, only the errors
    of the shape the client meant (a body with ``events`` is a batch) are shown."""
    errs = list(exc.errors())
    body = getattr(exc, "body", None)
    if len(errs) > 1 and isinstance(body, dict):
        want = "EventBatch" if "events" in body else "EventIn"
        mine = [e for e in errs if any(want in str(x) for x in e.get("loc", ())[:2])]
        errs = mine or errs
    if any(e.get("type") == "json_invalid" for e in errs):
        return "body is not valid JSON"
    if body is not None and not isinstance(body, dict) and "Event" in str(errs[0].get("loc", "")):
        return 'body must be a JSON object: one event, or {"events": [...]}'
    parts: list[str] = []
    for e in errs[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body" and "Event" not in str(x))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        part = f"{loc}: {msg}" if loc else msg
        if part not in parts:
            parts.append(part)
    return "; ".join(parts) or "invalid request"


def _tenant(request: Request) -> int:
    """The tenant of the request's ``Authorization: Bearer KEY``; 401 otherwise."""
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(
            401,
            "missing 'Authorization: Bearer KEY' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tid: int | None = request.app.state.key_tenant(key.strip())
    if tid is None:
        raise HTTPException(
            401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return tid


Tenant = Annotated[int, Depends(_tenant)]


def create_app(engine: Engine, config: RuntimeConfig | None = None) -> FastAPI:
    """The service on ``engine`` (already migrated). The writer thread starts with the app."""
    cfg = config or RuntimeConfig()
    key_cache: dict[str, tuple[int, float]] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = Service(engine, cfg)
        try:
            yield
        finally:
            app.state.service.stop()

    app = FastAPI(
        title="tripwire runtime",
        version="0.1.0",
        description="Ingest agent traces, score them with layered monitors that may be "
        "compromised, watch for behaviour shift, spend a human audit budget.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    def _key_tenant(key: str) -> int | None:
        h = hash_key(key)
        hit = key_cache.get(h)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        tid = tenant_for(engine, key)
        if tid is not None:
            key_cache[h] = (tid, now + 30.0)
        return tid

    app.state.key_tenant = _key_tenant

    async def _commit(request: Request, tid: int, evs: list[Event]) -> list[dict[str, Any]]:
        svc: Service = request.app.state.service
        try:
            return await asyncio.wait_for(asyncio.wrap_future(svc.submit(tid, evs)), timeout=30)
        except TimeoutError as exc:
            raise HTTPException(503, "the store did not commit in time; retry") from exc
        except Exception as exc:
            raise HTTPException(
                503, f"the store is unavailable ({type(exc).__name__}); retry"
            ) from exc

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness and database reachability (no auth)."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db = "ok"
        except Exception:
            db = "unreachable"
        return {"status": "ok" if db == "ok" else "degraded", "db": db}

    @app.post(
        "/v1/events",
        tags=["ingest"],
        response_model=EventsAccepted,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _EVENTS_SCHEMA}},
            }
        },
    )
    async def post_events(request: Request, tid: Tenant) -> Response:
        """Store and score one event, or a batch ``{"events": [...]}``. Answers 200 only after the
        events are committed; the answer carries each verdict (allow / flag / defer / block), so an
        agent harness can call this before executing a step."""
        # Parsed straight from bytes by pydantic's JSON validator: this is the hot path.
        raw = await request.body()
        try:
            payload = _EVENTS.validate_json(raw)
        except ValidationError as exc:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            raise RequestValidationError(exc.errors(), body=body) from exc
        items = payload.events if isinstance(payload, EventBatch) else [payload]
        out = await _commit(request, tid, [Event.from_in(e) for e in items])
        return Response(
            json.dumps({"accepted": len(out), "events": out}), media_type="application/json"
        )

    @app.post(
        "/v1/traces",
        tags=["ingest"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def post_traces(request: Request, tid: Tenant) -> Response:
        """OTLP/HTTP trace export (JSON or protobuf) with GenAI or OpenInference attributes."""
        ctype = request.headers.get("content-type", "application/json")
        try:
            from tripwire.runtime.ingest_otlp import parse_request, response_body

            evs = parse_request(await request.body(), ctype)
        except DataError as exc:
            raise HTTPException(415 if "content type" in str(exc) else 400, str(exc)) from exc
        if evs:
            await _commit(request, tid, evs)
        body, media = response_body(ctype)
        return Response(body, media_type=media)

    @app.post("/v1/chat/completions", tags=["proxy"])
    async def chat_completions(request: Request, tid: Tenant) -> Response:
        """OpenAI-compatible proxy (``serve --upstream URL``): forwards to the upstream model,
        stores and scores its answer, and blocks or defers it before the client sees it.
        ``X-Tripwire-Agent`` names the agent (default: the body's ``user``, else ``proxy``)."""
        from tripwire.runtime.proxy import forward

        if cfg.upstream is None:
            raise HTTPException(404, "proxy mode is off: start the service with --upstream URL")
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise HTTPException(400, "body is not valid JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise HTTPException(400, "body must be a chat completion request with 'messages'")
        agent = request.headers.get("x-tripwire-agent") or str(body.get("user") or "proxy")
        session = request.headers.get("x-tripwire-session")

        async def commit(evs: list[Event]) -> list[dict[str, Any]]:
            return await _commit(request, tid, evs) if evs else []

        out, media, action = await forward(
            body, cfg.upstream, cfg.upstream_key, agent[:200], session, commit
        )
        return Response(out, media_type=media, headers={"x-tripwire-action": action})

    def _rows(q: Any) -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    @app.get("/v1/events", tags=["read"])
    def get_events(
        tid: Tenant,
        agent: Annotated[str | None, Query(max_length=200)] = None,
        action: Annotated[Literal["allow", "flag", "defer", "block"] | None, Query()] = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """This tenant's events in id order, with their verdicts as ``gen_ai.evaluation.*``."""
        c = store.events.c
        q = select(store.events).where(c.tenant_id == tid, c.id > after_id)
        if agent is not None:
            q = q.where(c.agent == agent)
        if action is not None:
            q = q.where(c.action == action)
        rows = _rows(q.order_by(c.id).limit(limit))
        for r in rows:
            r.pop("tenant_id")
            r["received_at"] = r["received_at"].isoformat()
            r["evaluation"] = evaluation_attributes(r["score"], r["action"], r["verdicts"])
        return {"events": rows, "next_after_id": rows[-1]["id"] if rows else after_id}

    @app.get("/v1/alerts", tags=["read"])
    def get_alerts(
        tid: Tenant,
        kind: Annotated[
            Literal["verdict", "honeypot", "drift", "integrity"] | None, Query()
        ] = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Alerts: verdicts above allow, demoted monitors (honeypot), behaviour shift (drift)."""
        c = store.alerts.c
        q = select(store.alerts).where(c.tenant_id == tid, c.id > after_id)
        if kind is not None:
            q = q.where(c.kind == kind)
        rows = _rows(q.order_by(c.id).limit(limit))
        for r in rows:
            r.pop("tenant_id")
            r["created_at"] = r["created_at"].isoformat()
        return {"alerts": rows, "next_after_id": rows[-1]["id"] if rows else after_id}

    def _monitors(request: Request, tid: int) -> list[dict[str, Any]]:
        svc: Service = request.app.state.service
        base = {m["name"]: m for m in svc.template().monitor_status()}
        for r in _rows(select(store.monitor_health).where(store.monitor_health.c.tenant_id == tid)):
            m = base.setdefault(r["monitor"], {"name": r["monitor"], "cusum_h": cfg.honeypot_h})
            m.update(
                trusted=r["trusted"],
                demoted=r["demoted"],
                honeypots_sent=r["honeypots_sent"],
                honeypots_caught=r["honeypots_caught"],
                catch_rate=r["honeypots_caught"] / r["honeypots_sent"]
                if r["honeypots_sent"]
                else None,
                cusum=round(r["cusum"], 4),
            )
        return list(base.values())

    @app.get("/v1/monitors", tags=["read"])
    def get_monitors(request: Request, tid: Tenant) -> dict[str, Any]:
        """Each monitor's health: trust, honeypots shown and caught, CUSUM statistic."""
        return {"monitors": _monitors(request, tid)}

    @app.post("/v1/monitors/{name}/fingerprint", tags=["integrity"])
    def fingerprint(
        request: Request,
        tid: Tenant,
        name: Annotated[str, Path(min_length=1, max_length=100)],
        per_prompt: Annotated[int, Query(ge=2, le=50)] = 10,
    ) -> dict[str, Any]:
        """Ask an LLM monitor's endpoint the fixed canary prompts. The first fingerprint becomes
        the reference; later ones are compared with it (MMD permutation test) and a shift raises
        an ``integrity`` alert: the model behind the endpoint changed."""
        from datetime import UTC, datetime

        from tripwire.runtime.integrity import compare, sample_fingerprint
        from tripwire.runtime.monitors.llm import LLMMonitor

        svc: Service = request.app.state.service
        mon = next((m for m in svc.template().monitors if m.name == name), None)
        if not isinstance(mon, LLMMonitor):
            raise HTTPException(404, f"no LLM monitor named {name!r}")
        try:
            answers = sample_fingerprint(mon.client, mon.model, per_prompt)
        except Exception as exc:
            raise HTTPException(502, f"monitor endpoint failed ({type(exc).__name__})") from exc
        f = store.monitor_fingerprints.c
        now = datetime.now(UTC)
        with engine.begin() as conn:
            ref = conn.execute(
                select(f.answers)
                .where(f.tenant_id == tid, f.monitor == name, f.reference)
                .order_by(f.id.desc())
                .limit(1)
            ).scalar()
            if ref is None:
                conn.execute(
                    store.monitor_fingerprints.insert().values(
                        tenant_id=tid,
                        monitor=name,
                        reference=True,
                        answers=answers,
                        p_value=None,
                        created_at=now,
                    )
                )
                return {"monitor": name, "reference": True, "canaries": len(answers)}
            res = compare(ref, answers)
            conn.execute(
                store.monitor_fingerprints.insert().values(
                    tenant_id=tid,
                    monitor=name,
                    reference=False,
                    answers=answers,
                    p_value=res.p_value,
                    created_at=now,
                )
            )
            if res.shifted:
                conn.execute(
                    store.alerts.insert().values(
                        tenant_id=tid,
                        event_id=None,
                        kind="integrity",
                        monitor=name,
                        agent=None,
                        severity="high",
                        created_at=now,
                        message=f"monitor {name}: canary answers shifted (p={res.p_value:.4f}); "
                        "the model behind its endpoint may have been swapped or tampered with",
                        details={"statistic": res.statistic, "p_value": res.p_value},
                    )
                )
        return {
            "monitor": name,
            "reference": False,
            "statistic": res.statistic,
            "p_value": res.p_value,
            "shifted": res.shifted,
        }

    @app.get("/v1/audit", tags=["audit"])
    def get_audit(
        tid: Tenant,
        status: Annotated[Literal["open", "confirmed", "dismissed"], Query()] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The audit queue, most suspicious first."""
        c = store.audit_queue.c
        rows = _rows(
            select(store.audit_queue)
            .where(c.tenant_id == tid, c.status == status)
            .order_by(c.score.desc(), c.id)
            .limit(limit)
        )
        for r in rows:
            r.pop("tenant_id")
            r["created_at"] = r["created_at"].isoformat()
        return {"items": rows}

    @app.post("/v1/audit/{item_id}", tags=["audit"])
    def decide_audit(
        tid: Tenant, item_id: Annotated[int, Path(ge=1, le=2**62)], decision: AuditDecision
    ) -> dict[str, Any]:
        """Record a human's decision on one audit item."""
        c = store.audit_queue.c
        with engine.begin() as conn:
            res = conn.execute(
                update(store.audit_queue)
                .where(c.id == item_id, c.tenant_id == tid)
                .values(status=decision.status)
            )
        if res.rowcount == 0:
            raise HTTPException(404, f"no audit item {item_id}")
        return {"id": item_id, "status": decision.status}

    @app.get("/v1/drift", tags=["read"])
    def get_drift(
        request: Request,
        tid: Tenant,
        agent: Annotated[str, Query(min_length=1, max_length=200)],
        feature: Annotated[Literal["length", "score", "tool_call", "refusal"], Query()] = "score",
        last: Annotated[int, Query(ge=20, le=5000)] = 500,
    ) -> dict[str, Any]:
        """An agent's recent feature stream, its ruptures change points and detector settings."""
        from tripwire.runtime.drift import change_points, detector_state, features

        svc: Service = request.app.state.service
        pipe = svc.pipelines.get(tid)
        live_agent = pipe.drift.agents.get(agent) if pipe and pipe.drift else None
        live = None
        if live_agent is not None:
            live = {
                "calibrated": live_agent.calibrated,
                "events_seen": live_agent.n_seen,
                "alarms": live_agent.alarms,
                "state": {
                    f"{f}/{k}": detector_state(d)
                    for (f, k), d in list(live_agent.detectors.items())
                },
            }

        c = store.events.c
        rows = _rows(
            select(c.id, c.type, c.content, c.tool, c.score)
            .where(c.tenant_id == tid, c.agent == agent)
            .order_by(c.id.desc())
            .limit(last)
        )[::-1]
        vals = [
            features(r["type"], r["content"], r["tool"], r["score"], None)[feature] for r in rows
        ]
        d = store.drift_state.c
        det = _rows(select(store.drift_state).where(d.tenant_id == tid, d.agent == agent))
        return {
            "agent": agent,
            "feature": feature,
            "event_ids": [r["id"] for r in rows],
            "values": vals,
            "change_points": change_points(vals),
            "live": live,
            "detectors": [
                {k: r[k] for k in ("feature", "detector", "params", "alarms", "last_event_id")}
                for r in det
            ],
        }

    from tripwire.runtime.dashboard import render_dashboard, render_login

    def _cookie_tenant(request: Request) -> int | None:
        key = request.cookies.get(COOKIE)
        return _key_tenant(key) if key else None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request) -> HTMLResponse:
        tid = _cookie_tenant(request)
        if tid is None:
            return HTMLResponse(render_login(None))
        with engine.connect() as conn:
            html = render_dashboard(conn, tid, _monitors(request, tid))
        return HTMLResponse(html)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        if not key or _key_tenant(key) is None:
            return HTMLResponse(render_login("That key is not valid."), status_code=401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, key, httponly=True, samesite="strict")
        return resp

    @app.get("/v1/stats", tags=["read"])
    def stats(tid: Tenant) -> dict[str, Any]:
        """Counts of events by action and open audit items."""
        c = store.events.c
        with engine.connect() as conn:
            by: dict[str, int] = dict(
                conn.execute(
                    select(c.action, func.count()).where(c.tenant_id == tid).group_by(c.action)
                ).all()
            )
            open_items = conn.execute(
                select(func.count()).where(
                    store.audit_queue.c.tenant_id == tid, store.audit_queue.c.status == "open"
                )
            ).scalar_one()
        return {"events_by_action": by, "audit_open": open_items}

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_EVENTS_DEFS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


__all__ = ["create_app", "evaluation_attributes"]
