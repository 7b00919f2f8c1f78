"""Guard detectors: a saved detector or concept vector, the layers it reads, its calibration.

A guard detector is a file pair written by a whitebox detector's ``save()`` (or a concept
vector's) plus a sidecar ``BASE.guard.json`` beside it, written by ``tripwire guard calibrate``::

    {"version": 1, "layers": [2], "position": "last-prompt-token+every-token",
     "prefill": {"flag": 1.9, "block": 2.6, "budget": 0.01, "flag_budget": 0.05, "n": 200, ...},
     "decode": {"rule": "cusum", "mean": 0.1, "std": 0.8, "k": 0.5, "level": 6.3, ...},
     "model": "smollm2-135m"}

Scores are always read as "higher = more suspicious" (a classifier's score, minus an outlier
detector's normality, a concept vector's z-score). The prefill gate compares the score of the
prompt's last token with ``flag``/``block``; the decode monitor feeds every generated token's
score to a sequential rule (:mod:`tripwire.guard.rules`).

One detector is built in rather than saved: ``diff-kl``, the defection issue's default with a
base (``tripwire probe defection --method diff-kl``), the KL divergence of the served model's
first-token distribution from the clean base's at the last prompt token. It reads no residuals
but the base model's logits on the same prompt (the guard then holds the base too and runs it
once per prompt at prefill; nothing at decode). Served with ``--adapter DIR``, its sidecar is
``DIR.diff-kl.guard.json``, beside the adapter folder: a calibration belongs to one fine-tune.

Its sibling ``diff-kl-gen`` (``tripwire probe defection --method diff-kl-gen``) is the mean of
the same KL over the first :data:`HOLD_TOKENS` positions of the answer (the last prompt token and
the next ``HOLD_TOKENS - 1`` generated ones): the guard generates those tokens, **holds them
back**, and gates on the score before any of them reaches the client. The base follows the
answer token by token with its own KV cache until the gate decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripwire._io import write_json
from tripwire.errors import DataError, UsageError
from tripwire.guard.rules import DecodeRule
from tripwire.whitebox.concepts import ConceptVector
from tripwire.whitebox.detectors import Detector, MahalanobisDetector, suspicion
from tripwire.whitebox.detectors._base import Persisted

SIDECAR_VERSION = 1
POSITION = "last-prompt-token+every-token"
#: The built-in model-diffing detectors (``--detector diff-kl`` / ``diff-kl-gen``).
DIFF_KL = "diff-kl"
DIFF_KL_GEN = "diff-kl-gen"
BUILTINS = (DIFF_KL, DIFF_KL_GEN)
#: Answer positions ``diff-kl-gen`` averages (the probe's ``K_READ``): tokens held back.
HOLD_TOKENS = 8

Scorer = Callable[[np.ndarray], np.ndarray]
#: A linear score ``x @ w + b`` over the concatenated layers (read on the model's device).
Linear = tuple[np.ndarray, float]


@dataclass(frozen=True)
class Gaussian:
    """A Mahalanobis detector's score in a form the monitor computes on the model's device:
    per feature block ``b`` the log of the squared distance from ``means[b]`` under
    ``precisions[b]`` (divided by the block's width), z-scored by ``z_mean[b]``/``z_std[b]``,
    averaged over blocks (the same number as the detector's own suspicion)."""

    means: np.ndarray  # (blocks, width)
    precisions: np.ndarray  # (blocks, width, width)
    z_mean: np.ndarray  # (blocks,)
    z_std: np.ndarray  # (blocks,)


@dataclass(frozen=True)
class PrefillThresholds:
    """Thresholds on the last prompt token's score: ``>= block`` blocks, ``>= flag`` flags."""

    block: float
    flag: float | None = None
    budget: float = 0.01
    flag_budget: float | None = None
    n: int = 0
    false_block_rate: float | None = None


@dataclass
class GuardDetector:
    """One detector inside the guard.

    Args:
        name: how verdicts and score fields name it (the file's stem by default).
        layers: block indices it reads (their residuals are concatenated feature-wise).
        scorer: ``(rows, len(layers) * d_model)`` -> ``(rows,)``, higher = more suspicious.
        prefill: the calibrated gate, or ``None`` (scores are reported, nothing is gated).
        decode: the calibrated sequential rule, or ``None``.
        path: the detector's base path (where ``calibrate`` writes the sidecar).
        linear: the same score as ``(w, b)`` when it is linear (linear classifiers, concept
            vectors), so the monitor computes it with one matrix product on the device.
        gaussian: the same score as a :class:`Gaussian` (Mahalanobis detectors), also computed
            on the device, without a copy to the CPU or a call into NumPy's threads.
    """

    name: str
    layers: list[int]
    scorer: Scorer
    prefill: PrefillThresholds | None = None
    decode: DecodeRule | None = None
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    linear: Linear | None = None
    gaussian: Gaussian | None = None
    needs_base: bool = False  # scores the served model's logits against the clean base's
    # generated tokens held back before the gate decides (0: the gate reads the prompt only)
    hold: int = 0

    @property
    def calibrated(self) -> bool:
        """Thresholds are set: the prefill gate, and the decode rule where it has one (a
        diffing detector reads the prompt only)."""
        return self.prefill is not None and (self.decode is not None or self.needs_base)

    def score(self, residuals: dict[int, np.ndarray]) -> np.ndarray:
        """Suspicion per row from the residuals read at this detector's layers."""
        x = np.concatenate([residuals[i] for i in self.layers], axis=1)
        return np.asarray(self.scorer(x), dtype=np.float64)


def sidecar_path(base: str | Path) -> Path:
    """``BASE.guard.json`` for a detector saved at ``BASE`` (``.json``/``.safetensors`` dropped)."""
    p = Path(base)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".guard.json")


def _base(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


def _load_object(
    base: Path,
) -> tuple[Scorer, Linear | Gaussian | None, list[int] | None, str]:
    """The scorer, its linear or Gaussian form (if any), the layers the object knows it reads
    (if any), and what kind it is."""
    meta_file = base.with_suffix(".json")
    if not meta_file.is_file() or not base.with_suffix(".safetensors").is_file():
        raise UsageError(
            f"no saved detector at {base}: need {meta_file.name} and "
            f"{base.with_suffix('.safetensors').name} (written by a detector's save())"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_file} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if isinstance(meta, dict) and "kind" not in meta and "readout_b" in meta:
        cv = ConceptVector.load(base)
        sd = cv.neutral_std or 1.0
        linear = (cv.readout_w / sd, (cv.readout_b - cv.neutral_mean) / sd)
        return cv.zscore, linear, [cv.layer], f"concept:{cv.name}"
    det = Persisted.load(base)
    form: Linear | Gaussian | None = None
    if isinstance(det, Detector):  # a linear classifier: suspicion = X @ direction_ + bias_
        form = (np.asarray(det.direction_, dtype=np.float64), float(getattr(det, "bias_", 0.0)))
    elif isinstance(det, MahalanobisDetector):
        form = Gaussian(det.means_, det.precisions_, det.z_mean_, det.z_std_)
    return (lambda x: suspicion(det, x)), form, None, f"detector:{det.kind}"


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION:
        raise DataError(f"{path} is not a version-{SIDECAR_VERSION} guard sidecar; recalibrate")
    return data


def parse_spec(spec: str) -> tuple[Path, list[int] | None]:
    """``PATH`` or ``PATH:LAYER[,LAYER...]`` (the layers of an uncalibrated detector)."""
    path, sep, layers = spec.rpartition(":")
    if sep and layers.replace(",", "").replace("-", "").isdigit():
        return Path(path), [int(x) for x in layers.split(",")]
    return Path(spec), None


def _no_residuals(x: np.ndarray) -> np.ndarray:
    raise UsageError(f"{DIFF_KL} scores logits against the base, not residuals")


def diff_kl_detector(served: str | Path, name: str = DIFF_KL) -> GuardDetector:
    """The built-in ``diff-kl`` (or ``diff-kl-gen``) for the fine-tune at ``served`` (the
    adapter folder): its sidecar, if calibrated, is ``served.<name>.guard.json``."""
    if name not in BUILTINS:
        raise UsageError(f"unknown built-in detector {name!r}: use {' or '.join(BUILTINS)}")
    base = Path(str(served).rstrip("/") + f".{name}")
    side = _read_sidecar(sidecar_path(base))
    prefill = None
    if side is not None and side.get("prefill"):
        prefill = PrefillThresholds(**side["prefill"])
    return GuardDetector(
        name=name,
        layers=[],
        scorer=_no_residuals,
        prefill=prefill,
        path=base,
        meta={"kind": f"builtin:{name}", "model": (side or {}).get("model")},
        needs_base=True,
        hold=HOLD_TOKENS if name == DIFF_KL_GEN else 0,
    )


def load_detector(spec: str | Path, layers: Sequence[int] | None = None) -> GuardDetector:
    """Load a guard detector from ``PATH[:LAYERS]`` and its sidecar, if one was written.

    The layers: a concept vector's own; else those of the spec or ``layers`` (given beats
    stored); else the sidecar's; a plain detector without any gets an error saying how to fix
    it.
    """
    path, spec_layers = parse_spec(str(spec))
    base = _base(path)
    scorer, form, own_layers, kind = _load_object(base)
    side = _read_sidecar(sidecar_path(base))
    chosen = own_layers or spec_layers or layers or (side or {}).get("layers")
    if not chosen:
        raise UsageError(
            f"detector {base} does not say which layer it reads: pass {base}:LAYER "
            "(or calibrate it with --layer, which records the layer)"
        )
    prefill = decode = None
    if side is not None:
        if side.get("prefill"):
            prefill = PrefillThresholds(**side["prefill"])
        if side.get("decode"):
            decode = DecodeRule(**side["decode"])
    return GuardDetector(
        name=base.name,
        layers=[int(i) for i in chosen],
        scorer=scorer,
        prefill=prefill,
        decode=decode,
        path=base,
        meta={"kind": kind, "model": (side or {}).get("model")},
        linear=form if isinstance(form, tuple) else None,
        gaussian=form if isinstance(form, Gaussian) else None,
    )


def write_sidecar(det: GuardDetector, model: str, extra: dict[str, Any]) -> Path:
    """Write ``BASE.guard.json`` for ``det`` atomically; return its path."""
    if det.path is None:
        raise UsageError(f"detector {det.name} has no file to write a sidecar beside")
    target = sidecar_path(det.path)
    write_json(
        target,
        {
            "version": SIDECAR_VERSION,
            "layers": det.layers,
            "position": POSITION,
            "prefill": None if det.prefill is None else asdict(det.prefill),
            "decode": None if det.decode is None else asdict(det.decode),
            "model": model,
            **extra,
        },
    )
    return target


__all__ = [
    "POSITION",
    "BUILTINS",
    "DIFF_KL",
    "DIFF_KL_GEN",
    "Gaussian",
    "GuardDetector",
    "HOLD_TOKENS",
    "PrefillThresholds",
    "diff_kl_detector",
    "load_detector",
    "parse_spec",
    "sidecar_path",
    "write_sidecar",
]
