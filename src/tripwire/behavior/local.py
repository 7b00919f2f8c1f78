"""Local causal LMs behind the ``tripwire`` provider, with steering and white-box scores.

Concept vectors for steering and white-box scores are the shipped concepts of
:mod:`tripwire.whitebox` (``desperation``, ``calm``, ``fear``, ...), extracted once per model with
:func:`tripwire.whitebox.extract_concepts` and cached under ``tripwire_home()/behavior/concepts``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.errors import UsageError
from tripwire.models import LocalModel, load_model, render_with_response, tripwire_home

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str | None, str, str], LocalModel] = {}


@dataclass(frozen=True)
class Steering:
    """Add ``strength`` x the unit direction of ``concept`` at block ``layer`` (None = its best)."""

    concept: str
    layer: int | None
    strength: float

    @classmethod
    def parse(cls, spec: str) -> list[Steering]:
        out: list[Steering] = []
        for part in (p.strip() for p in re.split(r"[;]", spec) if p.strip()):
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


def parse_detectors(spec: str, n_layers: int) -> list[tuple[str, int, Any]]:
    """``PATH:LAYER`` (several ``;``-separated) -> loaded detectors with their block index."""
    from tripwire.models import resolve_layers
    from tripwire.whitebox import Detector

    out: list[tuple[str, int, Any]] = []
    for part in (p.strip() for p in spec.split(";") if p.strip()):
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
        known = {"adapter", "device", "dtype", "max_new_tokens", "steer", "whitebox", "detector"}
        bad = set(args) - known
        if bad:
            raise UsageError(
                f"unknown model args {sorted(bad)} for tripwire/{model_name}: use {sorted(known)}"
            )
        spec = model_name
        adapter = args.get("adapter")
        lm = shared_model(
            spec,
            None if adapter is None else str(adapter),
            str(args.get("dtype", "float32")),
            str(args.get("device", "cpu")),
        )
        steer = args.get("steer")
        wb = args.get("whitebox")
        chat = cls(
            lm=lm,
            max_new_tokens=int(args.get("max_new_tokens", 160)),
            steering=Steering.parse(str(steer)) if steer else [],
            whitebox=[w.strip() for w in str(wb).split(",") if w.strip()] if wb else [],
        )
        for name in {s.concept for s in chat.steering} | set(chat.whitebox):
            chat._vectors[name] = concept_vector(lm, name)
        if args.get("detector"):
            chat.detectors = parse_detectors(str(args["detector"]), lm.n_layers)
        return chat

    def _generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        from contextlib import ExitStack

        from tripwire.whitebox import generate, steer

        prompt = self.lm.chat(messages)
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
        return text.strip(), meta

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
    ) -> tuple[str, dict[str, Any]]:
        """Greedy (temperature 0) or sampled reply, with steering and white-box metadata."""
        return await asyncio.to_thread(self._generate, messages, max_new_tokens, temperature, seed)


__all__ = ["LocalChat", "Steering", "concept_vector", "shared_model"]
