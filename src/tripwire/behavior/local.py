"""Local causal LMs behind the ``tripwire`` provider, with steering and white-box scores.

Concept vectors for steering and white-box scores are the shipped concepts of
:mod:`tripwire.whitebox` (``desperation``, ``calm``, ``fear``, ...), extracted once per model with
:func:`tripwire.whitebox.extract_concepts` and cached under ``tripwire_home()/behavior/concepts``.

Model args arrive from three places in three shapes: ``inspect eval -M whitebox=a,b`` gives a
list, ``tripwire eval run -M whitebox=a,b`` and Python callers give a string. List-valued args
(``whitebox``, ``steer``, ``detector``) take a list, a tuple or a ``,``/``;``-separated string;
any other value is a one-line :class:`~tripwire.errors.UsageError` before the model loads.

Each reply is a :class:`Reply`: the text, the rendered prompt the model saw, its token counts
(for Inspect's usage and ``ModelCall``) and the white-box metadata. A prompt that does not fit the
model's context with ``max_new_tokens`` is refused before generating (:class:`ContextLengthError`).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.errors import UsageError
from tripwire.models import LocalModel, load_model, render_with_response, tripwire_home

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str | None, str, str], LocalModel] = {}
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")


class ContextLengthError(UsageError):
    """The prompt plus ``max_new_tokens`` does not fit the model's context; nothing was run."""


def spec_list(key: str, value: Any) -> list[str]:
    """A list-valued model arg as its items: a list/tuple, or a ``,``/``;``-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        items = re.split(r"[;,]", value)
    elif isinstance(value, list | tuple) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        items = [str(v) for v in value]
    else:
        raise UsageError(
            f"model arg {key}={value!r}: give a comma-separated string or a list of strings"
        )
    return [i.strip() for i in items if i.strip()]


@dataclass(frozen=True)
class Steering:
    """Add ``strength`` x the unit direction of ``concept`` at block ``layer`` (None = its best)."""

    concept: str
    layer: int | None
    strength: float

    @classmethod
    def parse(cls, spec: str | list[str] | tuple[str, ...]) -> list[Steering]:
        """``concept:strength`` or ``concept:layer:strength`` items (see :func:`spec_list`)."""
        out: list[Steering] = []
        for part in spec_list("steer", spec):
            bits = part.split(":")
            if len(bits) not in (2, 3):
                raise UsageError(
                    f"bad steer spec {part!r}: use concept:strength or concept:layer:strength"
                )
            try:
                strength = float(bits[-1])
                layer = int(bits[1]) if len(bits) == 3 else None
            except ValueError:
                raise UsageError(
                    f"bad steer spec {part!r}: layer is an int, strength a float"
                ) from None
            out.append(cls(bits[0], layer, strength))
        return out

    def label(self) -> str:
        return (
            f"{self.concept}@{self.layer if self.layer is not None else 'best'}:{self.strength:+g}"
        )


def parse_detectors(
    spec: str | list[str] | tuple[str, ...], n_layers: int
) -> list[tuple[str, int, Any]]:
    """``PATH:LAYER`` items (see :func:`spec_list`) -> loaded detectors with their block index."""
    from tripwire.models import resolve_layers
    from tripwire.whitebox import Detector

    out: list[tuple[str, int, Any]] = []
    for part in spec_list("detector", spec):
        path, sep, layer = part.rpartition(":")
        if not sep or not path:
            raise UsageError(f"bad detector spec {part!r}: use PATH:LAYER (a saved detector)")
        try:
            (idx,) = resolve_layers(int(layer), n_layers)
        except ValueError:
            raise UsageError(f"bad detector layer in {part!r}: an integer block index") from None
        out.append((Path(path).name, idx, Detector.load(path)))
    return out


def shared_model(spec: str, adapter: str | None, dtype: str, device: str) -> LocalModel:
    """Load a model once per process (Inspect may create several provider instances)."""
    key = (spec, adapter, dtype, device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(spec, adapter=adapter, dtype=dtype, device=device)
        return _MODELS[key]


def concept_vector(lm: LocalModel, name: str) -> Any:
    """The shipped concept ``name`` for ``lm`` (extracted once, then cached on disk)."""
    from tripwire.whitebox import ConceptVector, extract_concepts

    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", lm.name)
    base = tripwire_home() / "behavior" / "concepts" / safe / name
    if base.with_suffix(".json").is_file():
        try:
            return ConceptVector.load(base)
        except (UsageError, KeyError, ValueError):
            pass  # written by another tripwire version: extract again
    ((vec, _ev),) = extract_concepts(lm, names=[name])
    base.parent.mkdir(parents=True, exist_ok=True)
    vec.save(base)
    return vec


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"model arg {key}={value!r}: give a positive integer")
    return value


def context_length(lm: LocalModel) -> int | None:
    """The model's context in tokens, from its config (None when the config does not say)."""
    cfg = getattr(lm.model, "config", None)
    for name in _CONTEXT_FIELDS:
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Reply:
    """One generated reply and what it cost."""

    text: str
    """The reply, stripped."""
    metadata: dict[str, Any]
    """``steering`` labels and ``whitebox`` scores (empty when neither is on)."""
    prompt: str
    """The rendered prompt, exactly as the model read it."""
    input_tokens: int
    output_tokens: int
    seconds: float


@dataclass
class LocalChat:
    """One local model with optional steering and white-box recording."""

    lm: LocalModel
    max_new_tokens: int = 160
    steering: list[Steering] = field(default_factory=list)
    whitebox: list[str] = field(default_factory=list)
    detectors: list[tuple[str, int, Any]] = field(default_factory=list)
    """(name, layer, fitted Detector) scored on every reply (mean activation over the reply)."""
    _vectors: dict[str, Any] = field(default_factory=dict)
    _calls: int = 0

    @classmethod
    def from_args(cls, model_name: str, **args: Any) -> LocalChat:
        """Load ``model_name`` with the provider's model args (checked before anything loads)."""
        from tripwire.whitebox.datasets import CONCEPTS

        known = {"adapter", "device", "dtype", "max_new_tokens", "steer", "whitebox", "detector"}
        bad = set(args) - known
        if bad:
            raise UsageError(
                f"unknown model args {sorted(bad)} for tripwire/{model_name}: use {sorted(known)}"
            )
        max_new_tokens = _positive_int("max_new_tokens", args.get("max_new_tokens", 160))
        steering = Steering.parse(args.get("steer") or [])
        whitebox = spec_list("whitebox", args.get("whitebox"))
        wanted = list(dict.fromkeys([*(s.concept for s in steering), *whitebox]))
        unknown = [name for name in wanted if name not in CONCEPTS]
        if unknown:
            raise UsageError(
                f"unknown concept(s) {', '.join(unknown)} in -M steer/whitebox: "
                f"choose from {', '.join(CONCEPTS)}"
            )
        detector_specs = spec_list("detector", args.get("detector"))
        adapter = args.get("adapter")
        lm = shared_model(
            model_name,
            None if adapter is None else str(adapter),
            str(args.get("dtype", "float32")),
            str(args.get("device", "cpu")),
        )
        chat = cls(lm=lm, max_new_tokens=max_new_tokens, steering=steering, whitebox=whitebox)
        for name in {s.concept for s in chat.steering} | set(chat.whitebox):
            chat._vectors[name] = concept_vector(lm, name)
        if detector_specs:
            chat.detectors = parse_detectors(detector_specs, lm.n_layers)
        return chat

    def _fit(self, prompt: str, max_new_tokens: int) -> int:
        """The prompt's length in tokens; refuses one that leaves no room for the reply."""
        n = len(self.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        limit = context_length(self.lm)
        if limit is not None and n + max_new_tokens > limit:
            raise ContextLengthError(
                f"the prompt is {n} tokens and max_new_tokens {max_new_tokens}: over "
                f"{self.lm.name}'s context of {limit} tokens; shorten the conversation (a lower "
                "message limit, fewer or shorter turns) or lower -M max_new_tokens"
            )
        return n

    def _generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        from contextlib import ExitStack

        from tripwire.whitebox import generate, steer

        prompt = self.lm.chat(messages)
        n_in = self._fit(prompt, max_new_tokens)
        start = time.monotonic()
        with _LOCK, ExitStack() as stack:
            for s in self.steering:
                vec = self._vectors[s.concept]
                layer = vec.layer if s.layer is None else s.layer
                stack.enter_context(
                    steer(self.lm, {layer: vec.directions[layer]}, "add", s.strength)
                )
            if temperature > 0:
                text = self._sample(prompt, max_new_tokens, temperature, seed)
            else:
                (text,) = generate(self.lm, [prompt], max_new_tokens=max_new_tokens, batch_size=1)
            meta: dict[str, Any] = {}
            if self.steering:
                meta["steering"] = [s.label() for s in self.steering]
            if (self.whitebox or self.detectors) and text.strip():
                meta["whitebox"] = self._scores(messages, text)
        n_out = len(self.lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        return Reply(text.strip(), meta, prompt, n_in, n_out, time.monotonic() - start)

    def _scores(self, messages: list[dict[str, str]], text: str) -> dict[str, float]:
        from tripwire.whitebox import capture

        rendered = render_with_response(
            self.lm.tokenizer, [*messages, {"role": "assistant", "content": text.strip()}]
        )
        out: dict[str, float] = {}
        layers = sorted(
            {self._vectors[n].layer for n in self.whitebox} | {lay for _, lay, _ in self.detectors}
        )
        acts = capture(self.lm, [rendered], layers=layers, positions="mean", batch_size=1)
        for name in self.whitebox:
            vec = self._vectors[name]
            out[name] = float(np.asarray(vec.zscore(acts[vec.layer]))[0])
        for name, layer, det in self.detectors:
            out[f"detector:{name}"] = float(np.asarray(det.score_samples(acts[layer]))[0])
        return out

    def _sample(
        self, prompt: str, max_new_tokens: int, temperature: float, seed: int | None
    ) -> str:
        """One sampled continuation (temperature > 0); seeded when ``seed`` is given."""
        import torch

        self._calls += 1
        gen = torch.Generator(device="cpu").manual_seed((seed or 0) * 100_003 + self._calls)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        tok = self.lm.tokenizer
        enc = tok([prompt], return_tensors="pt", add_special_tokens=False).to(self.lm.device)
        with torch.inference_mode():
            ids = self.lm.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=temperature,
                top_p=1.0,
                pad_token_id=tok.pad_token_id,
            )
        return str(tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))

    async def respond(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        """Greedy (temperature 0) or sampled reply, with steering and white-box metadata."""
        return await asyncio.to_thread(self._generate, messages, max_new_tokens, temperature, seed)


__all__ = [
    "ContextLengthError",
    "LocalChat",
    "Reply",
    "Steering",
    "concept_vector",
    "context_length",
    "parse_detectors",
    "shared_model",
    "spec_list",
]
