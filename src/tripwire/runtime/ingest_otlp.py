"""OTLP/HTTP trace ingest (JSON and protobuf): spans carrying OpenTelemetry GenAI (``gen_ai.*``) or
OpenInference (``openinference.span.kind``, ``tool.*``, ``llm.*``) attributes become events.

Mapping, per span:
- a tool span (``gen_ai.operation.name == "execute_tool"`` or OpenInference kind ``TOOL``) is a
  ``tool_call`` with the tool's name and arguments (and its result as content when given);
- a model span (``chat``/``text_completion``/``generate_content`` or kind ``LLM``) is a ``message``
  carrying the model's output;
- other spans (agent, chain, retriever, ...) carry no action and are skipped.
An action's evaluations (span events ``gen_ai.evaluation.result``, or ``gen_ai.evaluation.*``
attributes on the span itself) come with its event: name, ``score.value``, ``score.label`` and
``explanation`` (:class:`~tripwire.runtime.events.Evaluation`; ``tripwire guard``'s detectors
arrive so). One without a finite numeric score is left out.
The agent is ``gen_ai.agent.name`` (or ``agent.name``), else the resource's ``service.name``.
The trace id becomes the event's session, and ``TRACE:SPAN`` the event's idempotency key: an
exporter's retry of a stored span is not stored twice (a span repeated in one export counts once).

Values no database can store are made storable rather than refused, so that no span an agent
shaped goes unmonitored: a NUL character becomes U+FFFD, and arguments holding NaN, infinities or
NUL become their JSON text (``{"input": "..."}``), the way non-object arguments already are.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tripwire.runtime import jsonsafe
from tripwire.runtime.errors import TraceError, UnsupportedMediaType
from tripwire.runtime.events import MAX_CONTENT_CHARS, TEXT_FIELDS, Evaluation, Event

MODEL_OPS = {"chat", "text_completion", "generate_content", "completion"}
EVALUATION_EVENT = "gen_ai.evaluation.result"
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v[:MAX_CONTENT_CHARS]
    return json.dumps(v, default=str)[:MAX_CONTENT_CHARS]


def _args(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if isinstance(v, dict):
        return v
    if isinstance(v, str):
        try:
            parsed = jsonsafe.loads(v)
        except ValueError:
            return {"input": v[:MAX_CONTENT_CHARS]}
        return parsed if isinstance(parsed, dict) else {"input": parsed}
    return {"input": v}


def _output_messages(a: dict[str, Any]) -> str | None:
    """Model output from GenAI (``gen_ai.output.messages``, legacy ``gen_ai.completion``) or
    OpenInference (``llm.output_messages.N.message.content``, ``output.value``)."""
    raw = a.get("gen_ai.output.messages")
    if isinstance(raw, str):
        try:
            msgs = jsonsafe.loads(raw)
        except ValueError:
            return _text(raw)
        texts = []
        for m in msgs if isinstance(msgs, list) else [msgs]:
            if isinstance(m, dict):
                for part in m.get("parts", []) or []:
                    if isinstance(part, dict) and part.get("type") == "text":
                        texts.append(str(part.get("content", "")))
                    elif isinstance(part, dict) and part.get("type") == "tool_call":
                        call = {"name": part.get("name"), "arguments": part.get("arguments")}
                        texts.append(json.dumps(call, default=str))
                if isinstance(m.get("content"), str):
                    texts.append(m["content"])
        if texts:
            return _text("\n".join(texts))
    for key in ("gen_ai.completion", "gen_ai.completion.0.content"):
        if key in a:
            return _text(a[key])
    oi = [a[k] for k in sorted(a) if k.startswith("llm.output_messages.") and k.endswith("content")]
    if oi:
        return _text("\n".join(str(x) for x in oi))
    return _text(a.get("output.value"))


def _clean(v: Any, limit: int) -> str:
    """``v`` as text every backend stores (NUL and lone surrogates become U+FFFD)."""
    s = str(v)[:limit].replace("\x00", "\ufffd")
    return s.encode("utf-8", "replace").decode("utf-8") if jsonsafe.text_problem(s) else s


def evaluation(attrs: dict[str, Any]) -> Evaluation | None:
    """The evaluation in ``gen_ai.evaluation.*`` attributes, or None (no name or no finite
    numeric score)."""
    name, value = attrs.get("gen_ai.evaluation.name"), attrs.get("gen_ai.evaluation.score.value")
    if not name or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    label = attrs.get("gen_ai.evaluation.score.label")
    why = attrs.get("gen_ai.evaluation.explanation")
    return Evaluation(
        _clean(name, 200),
        float(value),
        _clean(label, 50) if label is not None else None,
        _clean(why, 2000) if why is not None else "",
    )


def span_to_event(
    attrs: dict[str, Any],
    resource: dict[str, Any],
    session: str | None,
    evaluations: tuple[Evaluation, ...] = (),
) -> Event | None:
    """One span's event, or None for spans that are not an action. ``evaluations``: those
    recorded as the span's events (the span's own ``gen_ai.evaluation.*`` attributes are
    added here)."""
    own = evaluation(attrs)
    if own is not None:
        evaluations = (own, *evaluations)
    op = attrs.get("gen_ai.operation.name")
    kind = str(attrs.get("openinference.span.kind", "")).upper()
    agent = (
        attrs.get("gen_ai.agent.name") or attrs.get("agent.name") or resource.get("service.name")
    )
    agent = str(agent or "unknown")[:200]
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    model = model or attrs.get("llm.model_name")
    model = str(model)[:200] if model else None
    if op == "execute_tool" or kind == "TOOL":
        tool = attrs.get("gen_ai.tool.name") or attrs.get("tool.name") or "unknown_tool"
        args = _args(
            attrs.get("gen_ai.tool.call.arguments")
            or attrs.get("tool.parameters")
            or attrs.get("input.value")
        )
        result = attrs.get("gen_ai.tool.call.result") or attrs.get("output.value")
        return Event(
            agent,
            "tool_call",
            _text(result),
            str(tool)[:200],
            args,
            session,
            model,
            "otlp",
            evaluations=evaluations,
        )
    if op in MODEL_OPS or kind == "LLM":
        content = _output_messages(attrs)
        if content is None:
            return None
        return Event(
            agent, "message", content, None, None, session, model, "otlp", evaluations=evaluations
        )
    return None


def _storable(ev: Event, key: str | None) -> Event:
    """``ev`` with idempotency key ``key``, made storable on every backend (module docstring)."""
    fix: dict[str, Any] = {
        f: v.replace("\x00", "\ufffd")
        for f in TEXT_FIELDS
        if isinstance(v := getattr(ev, f), str) and jsonsafe.text_problem(v)
    }
    if key is not None and jsonsafe.text_problem(key):
        key = key.replace("\x00", "\ufffd")
    if ev.arguments is not None and jsonsafe.value_problem(ev.arguments):
        fix["arguments"] = {"input": json.dumps(ev.arguments, default=str)[:MAX_CONTENT_CHARS]}
    return replace(ev, key=key, **fix)


def _json_request(body: bytes, req: ExportTraceServiceRequest) -> list[tuple[str, str]]:
    """Fill ``req`` from OTLP JSON; the spans' (trace id, span id), hex, in order."""
    try:
        raw = jsonsafe.loads(body)
    except ValueError as exc:
        raise TraceError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TraceError("OTLP JSON body must be an object with 'resourceSpans'")
    # OTLP JSON writes ids as hex, protobuf's JSON mapping expects base64: keep them aside. A
    # list that is not one is left to the protobuf parser, which names it.
    ids: list[tuple[str, str]] = []

    def items(obj: Any, name: str) -> list[Any]:
        v = obj.get(name, []) if isinstance(obj, dict) else []
        return v if isinstance(v, list) else []

    for rs in items(raw, "resourceSpans"):
        for ss in items(rs, "scopeSpans"):
            for sp in items(ss, "spans"):
                if isinstance(sp, dict):
                    ids.append(
                        (str(sp.get("traceId") or "")[:64], str(sp.get("spanId") or "")[:32])
                    )
                    for k in _ID_KEYS:
                        sp.pop(k, None)
    try:
        json_format.ParseDict(raw, req, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0][:200] if str(exc) else "invalid"
        raise TraceError(f"body is not an OTLP ExportTraceServiceRequest: {msg}") from exc
    return ids


def parse_request(body: bytes, content_type: str) -> list[Event]:
    """Decode an OTLP ``ExportTraceServiceRequest`` (JSON or protobuf) into events.

    Raises :class:`UnsupportedMediaType` for a content type that is neither, and
    :class:`TraceError` for a body that does not decode (both one-line messages, both
    :class:`~tripwire.errors.DataError`).
    """
    req = ExportTraceServiceRequest()
    ctype = content_type.split(";")[0].strip().lower()
    hex_ids: list[tuple[str, str]] = []
    if ctype == "application/x-protobuf":
        try:
            req.ParseFromString(body)
        except (DecodeError, RuntimeWarning) as exc:
            raise TraceError("body is not a valid OTLP protobuf ExportTraceServiceRequest") from exc
    elif ctype == "application/json":
        hex_ids = _json_request(body, req)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {ctype!r}: use application/json or application/x-protobuf"
        )
    out: list[Event] = []
    seen: set[str] = set()
    i = 0
    for rs in req.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                trace, span = (
                    hex_ids[i] if i < len(hex_ids) else (sp.trace_id.hex(), sp.span_id.hex())
                )
                i += 1
                key = f"{trace}:{span}" if trace and span else None
                evals = tuple(
                    e
                    for se in sp.events
                    if se.name == EVALUATION_EVENT
                    and (e := evaluation(_attrs(se.attributes))) is not None
                )
                ev = span_to_event(_attrs(sp.attributes), resource, trace or None, evals)
                if ev is None or (key is not None and key in seen):
                    continue
                if key is not None:
                    seen.add(key)
                out.append(_storable(ev, key))
    return out


def response_body(content_type: str, rejected: int = 0) -> tuple[bytes, str]:
    """An ``ExportTraceServiceResponse`` in the request's encoding."""
    resp = ExportTraceServiceResponse()
    if rejected:
        resp.partial_success.rejected_spans = rejected
    if content_type.split(";")[0].strip().lower() == "application/x-protobuf":
        return resp.SerializeToString(), "application/x-protobuf"
    return json_format.MessageToJson(resp).encode(), "application/json"


__all__ = ["evaluation", "parse_request", "response_body", "span_to_event"]
