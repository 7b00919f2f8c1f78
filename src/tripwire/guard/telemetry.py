"""The guard's telemetry: one OpenTelemetry GenAI span per chat request, with its verdicts.

Each answered request (server or in-process :class:`~tripwire.guard.Guard`) becomes a ``chat``
span following the GenAI semantic conventions: ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.*`` (model, max_tokens, temperature, top_p, seed, stop
sequences, choice count), ``gen_ai.response.*`` (id, model, finish_reasons),
``gen_ai.usage.input_tokens``/``output_tokens``, and the conversation as
``gen_ai.input.messages``/``gen_ai.output.messages`` (JSON, role and ``parts``), which is what
``tripwire serve``'s OTLP ingest stores as the event's content.

Every detector verdict is a ``gen_ai.evaluation.result`` span event (the conventions' record of
an evaluation, one per evaluator, so several detectors never overwrite one another) with
``gen_ai.evaluation.name``, ``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.score.label``
(``allow``/``flag``/``block``) and ``gen_ai.evaluation.explanation``, plus
``tripwire.guard.stage``:

* ``prefill``: evaluation ``NAME``, the detector's score of the last prompt token and the gate's
  label for it;
* ``hold``: evaluation ``NAME``, one per choice (``tripwire.guard.choice``), for a detector that
  gates on the first answer tokens held back (``diff-kl-gen``);
* ``decode``: evaluation ``NAME.decode``, one per choice (``tripwire.guard.choice``): the highest
  per-token score of the answer, labelled ``block`` when this detector's rule cut the choice.

The span's ``tripwire.guard.action`` is the answer's strictest action. Spans go through the
SDK's :class:`BatchSpanProcessor` (a queue and a background thread), so exporting never waits in
the request path; a collector that is down costs dropped spans and one line on stderr, never a
failed or slower request.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from tripwire.errors import UsageError
from tripwire.guard.shapes import Answer

EVALUATION_EVENT = "gen_ai.evaluation.result"
PROVIDER = "tripwire"
SERVICE = "tripwire-guard"
EXPORT_TIMEOUT_S = 5.0
_SDK_LOGGERS = ("opentelemetry.exporter.otlp", "opentelemetry.sdk.trace.export")


def traces_url(base: str, flag: str = "--watch", as_given: bool = False) -> str:
    """``BASE/v1/traces`` for an ``http(s)://host[:port][/path]`` base (one-line
    :class:`UsageError` otherwise); a URL already ending in ``/v1/traces`` is kept, and so is
    any path with ``as_given`` (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is the signal's URL)."""
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise UsageError(f"{flag} {base!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {base!r} is not an http(s)://HOST[:PORT] URL")
    if parts.query or parts.fragment:
        raise UsageError(f"{flag} {base!r}: give the service's base URL, without ?query or #")
    path = parts.path if as_given else parts.path.rstrip("/")
    if not as_given and not path.endswith("/v1/traces"):
        path += "/v1/traces"
    return f"{parts.scheme}://{parts.netloc}{path}"


class _Reported(SpanExporter):
    """An exporter that says once on stderr that exports fail, instead of the SDK's log line
    per failed batch (and again once when they work again)."""

    def __init__(self, inner: SpanExporter, where: str) -> None:
        self.inner, self.where = inner, where
        self.failing = False
        self.failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter must never take the batch thread down
            result = SpanExportResult.FAILURE
            why = type(exc).__name__
        else:
            why = "the collector did not accept them"
        if result is SpanExportResult.FAILURE:
            self.failures += 1
            if not self.failing:
                self.failing = True
                print(
                    f"tripwire guard: cannot export spans to {self.where} ({why}); answering "
                    "on, spans are dropped until it is reachable",
                    file=sys.stderr,
                    flush=True,
                )
        elif self.failing:
            self.failing = False
            print(f"tripwire guard: exporting spans to {self.where} again", file=sys.stderr)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class Telemetry:
    """Turns finished answers into spans on its own tracer provider (the process's global one
    is left alone), exported in batches by a background thread.

    Args:
        exporter: any SDK :class:`SpanExporter` (the OTLP/HTTP one: :meth:`otlp`).
        where: how the one-line export failure message names the destination.
        service_name: the resource's ``service.name`` (the agent ``tripwire serve`` files the
            events under) when ``OTEL_SERVICE_NAME`` does not set it.
        content: record the conversation (``gen_ai.input.messages``/``output.messages``).
    """

    def __init__(
        self,
        exporter: SpanExporter,
        where: str = "the exporter",
        service_name: str = SERVICE,
        content: bool = True,
    ) -> None:
        from importlib.metadata import version

        self.content = content
        self.exporter = _Reported(exporter, where)
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": service_name}))
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tripwire.guard", version("tripwire"))
        self._closed = threading.Event()

    @classmethod
    def otlp(
        cls, endpoint: str, key: str | None = None, timeout: float = EXPORT_TIMEOUT_S, **kw: Any
    ) -> Telemetry:
        """OTLP/HTTP (protobuf) to ``endpoint`` (the full ``.../v1/traces`` URL), with
        ``Authorization: Bearer KEY`` when a key is given (``tripwire serve``'s API keys)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        for name in _SDK_LOGGERS:  # _Reported says it once; the SDK would say it per batch
            logging.getLogger(name).setLevel(logging.CRITICAL)
        headers = {"authorization": f"Bearer {key}"} if key else None
        return cls(OTLPSpanExporter(endpoint, headers=headers, timeout=timeout), endpoint, **kw)

    # -- spans -----------------------------------------------------------------------------
    def record(self, answer: Answer, error: str | None = None) -> None:
        """The span of one finished (or abandoned, ``error`` set) answer."""
        if self._closed.is_set():
            return
        span = self.tracer.start_span(
            f"chat {answer.model}",
            kind=SpanKind.INTERNAL,  # the model runs in this process
            attributes=self.attributes(answer),
            start_time=answer.started_ns,
        )
        for attrs in evaluations(answer):
            span.add_event(EVALUATION_EVENT, attrs)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def attributes(self, answer: Answer) -> dict[str, Any]:
        p = answer.params
        messages = answer.messages()
        usage = answer.usage()
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": answer.model,
            "gen_ai.response.model": answer.model,
            "gen_ai.response.id": answer.id,
            "gen_ai.request.temperature": float(p.temperature),
            "gen_ai.request.top_p": float(p.top_p),
            "gen_ai.response.finish_reasons": [reason for _m, reason in messages],
            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": usage["completion_tokens"],
            "tripwire.guard.action": answer.action,
        }
        if p.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = p.max_tokens
        if p.seed is not None:
            attrs["gen_ai.request.seed"] = p.seed
        if p.stop:
            attrs["gen_ai.request.stop_sequences"] = list(p.stop)
        if p.n != 1:
            attrs["gen_ai.request.choice.count"] = p.n
        if self.content:
            attrs["gen_ai.input.messages"] = json.dumps(
                [{"role": m["role"], "parts": [_text(m["content"])]} for m in p.messages]
            )
            attrs["gen_ai.output.messages"] = json.dumps(
                [_output(m, reason) for m, reason in messages]
            )
        return attrs

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export what is queued (tests, shutdown); False when it did not finish in time."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporter thread; later answers record nothing."""
        if not self._closed.is_set():
            self._closed.set()
            self.provider.shutdown()


def _text(content: str | None) -> dict[str, str]:
    return {"type": "text", "content": content or ""}


def _output(message: dict[str, Any], reason: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        parts.append(_text(message["content"]))
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        try:
            arguments = json.loads(fn["arguments"])
        except ValueError:
            arguments = fn["arguments"]
        parts.append(
            {"type": "tool_call", "id": call["id"], "name": fn["name"], "arguments": arguments}
        )
    return {"role": "assistant", "parts": parts, "finish_reason": reason}


def _explain(name: str, reasons: Sequence[str], label: str, calibrated: bool) -> str:
    mine = [r for r in reasons if r.startswith(f"{name} ")]
    if mine:
        return "; ".join(mine)
    if not calibrated:
        return "not calibrated: the score is reported, it gates nothing"
    return "under the flag and block thresholds" if label == "allow" else label


def evaluations(answer: Answer) -> list[dict[str, Any]]:
    """The ``gen_ai.evaluation.result`` events of an answer: every detector's prefill verdict,
    then each choice's hold verdict (``diff-kl-gen``) and its decode verdict per detector that
    scored its tokens."""
    out: list[dict[str, Any]] = []
    gate = answer.gate
    if gate is not None:
        for name, score in gate.scores.items():
            label = gate.labels.get(name, "allow")
            calibrated = name in gate.labels  # an uncalibrated detector gates nothing
            out.append(
                {
                    "gen_ai.evaluation.name": name,
                    "gen_ai.evaluation.score.value": float(score),
                    "gen_ai.evaluation.score.label": label,
                    "gen_ai.evaluation.explanation": _explain(
                        name, gate.reasons, label, calibrated
                    ),
                    "gen_ai.response.id": answer.id,
                    "tripwire.guard.stage": "prefill",
                }
            )
    for i, choice in enumerate(answer.choices):
        verdict = choice.finish.verdict if choice.finish is not None else None
        hold = choice.finish.hold if choice.finish is not None else None
        if hold is not None:  # diff-kl-gen's held-back tokens
            for name, score in hold.scores.items():
                label = hold.labels.get(name, "allow")
                out.append(
                    {
                        "gen_ai.evaluation.name": name,
                        "gen_ai.evaluation.score.value": float(score),
                        "gen_ai.evaluation.score.label": label,
                        "gen_ai.evaluation.explanation": _explain(
                            name, hold.reasons, label, name in hold.labels
                        ),
                        "gen_ai.response.id": answer.id,
                        "tripwire.guard.stage": "hold",
                        "tripwire.guard.choice": i,
                    }
                )
        cut = verdict if verdict is not None and verdict.stage == "decode" else None
        # The token that alarmed was scored but never released: its score counts too.
        names = [
            *choice.scores,
            *(n for n in (cut.scores if cut else {}) if n not in choice.scores),
        ]
        for name in names:
            scores = list(choice.scores.get(name, []))
            if cut is not None and name in cut.scores:
                scores.append(cut.scores[name])
            if not scores:
                continue
            label = cut.labels.get(name, "allow") if cut is not None else "allow"
            explanation = (
                _explain(name, cut.reasons, label, True)
                if label != "allow" and cut is not None
                else f"no alarm over {len(scores)} generated tokens (peak token score)"
            )
            out.append(
                {
                    "gen_ai.evaluation.name": f"{name}.decode",
                    "gen_ai.evaluation.score.value": float(max(scores)),
                    "gen_ai.evaluation.score.label": label,
                    "gen_ai.evaluation.explanation": explanation,
                    "gen_ai.response.id": answer.id,
                    "tripwire.guard.stage": "decode",
                    "tripwire.guard.choice": i,
                }
            )
    return out


__all__ = ["EVALUATION_EVENT", "Telemetry", "evaluations", "traces_url"]
