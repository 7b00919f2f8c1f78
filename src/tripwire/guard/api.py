"""The guard in-process: a local model behind the prefill gate and the decode monitor, no server.

Example:
    >>> from tripwire.guard import Guard
    >>> guard = Guard.from_files("smollm2-135m", ["probe.safetensors"])  # doctest: +SKIP
    >>> answer = guard.chat([{"role": "user", "content": "Hi"}], max_tokens=32)  # doctest: +SKIP
    >>> answer["choices"][0]["finish_reason"], answer["tripwire"]["action"]  # doctest: +SKIP
    ('stop', 'allow')

:meth:`Guard.chat` returns the same dict the server's ``POST /v1/chat/completions`` answers
(:mod:`tripwire.guard.shapes`); :meth:`Guard.stream` yields the same chunks. The server runs
:meth:`Guard.prepare` and :attr:`Guard.engine` itself, batching concurrent requests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from tripwire.errors import UsageError
from tripwire.guard.backend import GuardBackend, TransformersBackend
from tripwire.guard.chat import ChatParams, RequestError, parse_body, render
from tripwire.guard.detectors import (
    BUILTINS,
    GuardDetector,
    diff_kl_detector,
    load_detector,
)
from tripwire.guard.engine import Engine, Event, GenRequest
from tripwire.guard.monitor import Monitor
from tripwire.guard.policy import Policy
from tripwire.guard.shapes import Answer
from tripwire.models.loading import LocalModel, load_model

if TYPE_CHECKING:
    from tripwire.guard.telemetry import Telemetry

DEFAULT_MAX_TOKENS = 256


@dataclass
class Prepared:
    """A checked request: its parameters, the engine's request, and its answer collector."""

    params: ChatParams
    request: GenRequest
    answer: Answer


def load_detectors(
    specs: Sequence[str | Path], adapter: str | Path | None = None
) -> list[GuardDetector]:
    """Guard detectors from ``--detector`` values: saved files, or the built-in ``diff-kl`` /
    ``diff-kl-gen`` (which need the ``adapter`` being served: their calibration lives beside
    it)."""
    out = []
    for spec in specs:
        if str(spec) in BUILTINS:
            if adapter is None:
                raise UsageError(
                    f"--detector {spec} diffs a fine-tune against its base: give --adapter DIR"
                )
            out.append(diff_kl_detector(adapter, str(spec)))
        else:
            out.append(load_detector(spec))
    return out


class Guard:
    """A local model served with detectors reading its own residual stream.

    Args:
        lm: the loaded model.
        detectors: guard detectors (:func:`~tripwire.guard.detectors.load_detector`).
        name: the model name answers carry (and the server accepts); default ``lm.name``.
        default_max_tokens: ``max_tokens`` when a request gives none (capped by the context).
        backend: a :class:`~tripwire.guard.backend.GuardBackend`; default transformers.
        base: the clean base model, for diffing detectors (``diff-kl``): the served model
            is then a fine-tune of it (``lm`` loaded with the adapter).
        telemetry: a :class:`~tripwire.guard.telemetry.Telemetry`: every answered request
            becomes an OpenTelemetry GenAI span with the detectors' verdicts.
        policy: what verdicts do (:class:`~tripwire.guard.policy.Policy`: shadow mode,
            per-detector caps, the notice, ``on_error``); default: enforce every detector.
    """

    def __init__(
        self,
        lm: LocalModel,
        detectors: Sequence[GuardDetector] = (),
        name: str | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        backend: GuardBackend | None = None,
        base: LocalModel | None = None,
        telemetry: Telemetry | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.lm = lm
        self.telemetry = telemetry
        self.name = name or lm.name
        self.default_max_tokens = default_max_tokens
        self.policy = policy or Policy()
        self.policy.check_detectors([d.name for d in detectors])
        self.monitor = Monitor(detectors, self.policy)
        if self.monitor.needs_base and base is None and backend is None:
            diffing = next(d.name for d in self.monitor.detectors if d.needs_base)
            raise UsageError(
                f"detector {diffing} diffs the served fine-tune against its clean base: serve "
                "--model BASE --adapter DIR"
            )
        self.base = base if self.monitor.needs_base else None
        self.backend = backend or TransformersBackend(lm, self.monitor.layers)
        base_backend = TransformersBackend(self.base) if self.base is not None else None
        self.engine = Engine(self.backend, self.monitor, lm.tokenizer, base_backend)
        self._lock = threading.Lock()

    @classmethod
    def from_files(
        cls,
        model: str,
        detectors: Sequence[str | Path] = (),
        adapter: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        **kwargs: Any,
    ) -> Guard:
        """Load the model and the detectors (``PATH``, ``PATH:LAYER``, or ``diff-kl`` with an
        ``adapter``) from local files."""
        dets = load_detectors(detectors, adapter)
        base = None
        if any(d.needs_base for d in dets):
            base = load_model(model, None, dtype, device)
        return cls(load_model(model, adapter, dtype, device), dets, base=base, **kwargs)

    @property
    def detectors(self) -> list[GuardDetector]:
        return self.monitor.detectors

    # -- requests --------------------------------------------------------------------------
    def prompt_ids(self, params: ChatParams) -> list[int]:
        tok = self.lm.tokenizer
        try:
            text = render(tok, params)
        except TemplateError as exc:  # e.g. "roles must alternate user/assistant"
            raise RequestError(
                f"this model's chat template refused the messages: {exc}".splitlines()[0],
                "messages",
            ) from None
        special = not getattr(tok, "chat_template", None)
        return list(tok(text, add_special_tokens=special)["input_ids"])

    def prepare(self, body: dict[str, Any]) -> Prepared:
        """Check a request body and tokenise it; :class:`RequestError` says what is wrong."""
        params = parse_body(body)
        if params.model is not None and params.model != self.name:
            raise RequestError(
                f"model {params.model!r} is not served here; this guard serves {self.name!r}",
                "model",
                404,
                "model_not_found",
            )
        ids = self.prompt_ids(params)
        ctx = self.backend.context_length
        if len(ids) >= ctx:
            raise RequestError(
                f"the prompt is {len(ids)} tokens but this model's context is {ctx}: shorten the "
                "messages",
                "messages",
                400,
                "context_length_exceeded",
            )
        room = ctx - len(ids)
        if params.max_tokens is not None and params.max_tokens > room:
            raise RequestError(
                f"max_tokens {params.max_tokens} + the prompt's {len(ids)} tokens exceed this "
                f"model's context of {ctx}: ask for at most {room}",
                "max_tokens",
                400,
                "context_length_exceeded",
            )
        request = GenRequest(
            prompt_ids=ids,
            n=params.n,
            max_tokens=params.max_tokens or min(self.default_max_tokens, room),
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop,
        )
        record = self.telemetry.record if self.telemetry is not None else None
        answer = Answer(params, self.name, len(ids), record, self.policy)
        return Prepared(params, request, answer)

    def run(self, batch: Sequence[Prepared], sink: Any) -> None:
        """Run prepared requests as one batch (one caller at a time)."""
        with self._lock:
            self.engine.run([p.request for p in batch], sink)

    # -- the in-process API ----------------------------------------------------------------
    @staticmethod
    def _body(messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        scores = options.pop("scores", False)
        body = {"messages": messages, **{k: v for k, v in options.items() if v is not None}}
        if scores:
            body["tripwire"] = {"scores": True}
        return body

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer an OpenAI chat completion body (non-streamed) in this thread."""
        prep = self.prepare({**body, "stream": False})
        try:
            self.run([prep], lambda _i, ev: prep.answer.add(ev))
        except BaseException as exc:
            prep.answer.close(type(exc).__name__)
            raise
        return prep.answer.completion()

    def chat(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """Answer ``messages``; ``options`` are the OpenAI request fields (``n``, ``stop``,
        ``max_tokens``, ``temperature``, ``seed``, ``tools``, ...) plus ``scores=True``."""
        return self.complete(self._body(messages, **options))

    def stream(self, messages: list[dict[str, Any]], **options: Any) -> Iterator[dict[str, Any]]:
        """Yield the answer's stream chunks as they are generated (the engine runs in a
        thread; closing the iterator cancels the generation)."""
        prep = self.prepare({**self._body(messages, **options), "stream": True})
        events: queue.Queue[Event | BaseException | None] = queue.Queue()

        def work() -> None:
            try:
                self.run([prep], lambda _i, ev: events.put(ev))
            except BaseException as exc:  # re-raised in the caller's thread
                events.put(exc)
            finally:
                events.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        error: str | None = "cancelled"  # closed by the caller before the answer finished
        try:
            while (item := events.get()) is not None:
                if isinstance(item, BaseException):
                    error = type(item).__name__
                    raise item
                yield from prep.answer.chunks(item)
        finally:
            prep.request.cancelled.set()
            thread.join()
            prep.answer.close(error)


__all__ = ["DEFAULT_MAX_TOKENS", "Guard", "Prepared", "load_detectors"]
