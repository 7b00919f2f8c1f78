"""Behaviour shift: per-agent feature streams through river's drift detectors, calibrated to a
target false-alarm run length (ARL0) on a baseline period, with ruptures to localise change points.

A shift in what an agent does is a signal even when no single action is an attack: a model that
starts calling tools it never used, writes far longer outputs, stops refusing, or drifts up in
monitor score. Evaluations that came with the events (``eval:NAME``, e.g. ``tripwire guard``'s
detector scores) are streams too, each watched like ``score``; a stream needs
``MIN_EVAL_BASELINE`` values in the agent's baseline to be calibrated (one that appears later is
not watched). Each agent's first ``baseline_n`` events are its baseline. Then, for every
(feature, detector) pair, the detector's sensitivity parameter is chosen on bootstrap resamples of
the baseline: the most sensitive setting whose estimated run length to a false alarm is at least
``arl0`` events. Calibration runs off the ingest path (a worker thread); events arriving meanwhile
are buffered and fed once it is done.

State is resumed after a restart by replaying the agent's stored events since calibration (at
most ``replay_limit``) into detectors rebuilt from the persisted parameters; with no more than
``replay_limit`` events since calibration the resumed detectors equal the uninterrupted ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift as rdrift

from tripwire.errors import UsageError

REFUSAL = re.compile(
    r"\b(i can(no|')t|i cannot|i won't|i will not|i'm sorry,? but|i am unable|as an ai)\b", re.I
)

FEATURES: tuple[str, ...] = ("length", "score", "tool_call", "refusal", "new_tool")
# Which river detectors watch which feature. KSWIN is fed every ``kswin_stride``-th value: it runs
# a Kolmogorov-Smirnov test per update (~0.2 ms), too slow for every event at 2,000 events/s.
PLAN: dict[str, tuple[str, ...]] = {
    "length": ("PageHinkley", "ADWIN", "KSWIN"),
    "score": ("PageHinkley", "ADWIN"),
    "tool_call": ("ADWIN",),
    "refusal": ("ADWIN",),
    "new_tool": ("ADWIN",),
}
ADWIN_GRID = (0.05, 0.02, 0.01, 0.002, 5e-4, 1e-4, 1e-5, 1e-6)
PH_GRID = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)  # x baseline std
MARGIN = 1.5
SCALE_FLOOR = 0.05
KSWIN_GRID = (0.01, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5)
EVAL_PLAN: tuple[str, ...] = PLAN["score"]  # the detectors of each evaluation's stream
MIN_EVAL_BASELINE = 20
Extra = Mapping[str, float]


def features(
    etype: str,
    content: str | None,
    tool: str | None,
    score: float,
    baseline_tools: frozenset[str] | None,
) -> dict[str, float]:
    """The feature vector of one event. ``new_tool`` is 1 for a tool outside the baseline's."""
    return {
        "length": math.log1p(len(content or "")),
        "score": float(score),
        "tool_call": 1.0 if etype == "tool_call" else 0.0,
        "refusal": 1.0 if etype == "message" and content and REFUSAL.search(content) else 0.0,
        "new_tool": 1.0
        if etype == "tool_call"
        and baseline_tools is not None
        and (tool or "") not in baseline_tools
        else 0.0,
    }


def make_detector(kind: str, param: float, scale: float) -> Any:
    """A fresh river detector of ``kind`` at sensitivity ``param``."""
    if kind == "ADWIN":
        return rdrift.ADWIN(delta=param)
    if kind == "PageHinkley":
        return rdrift.PageHinkley(min_instances=30, delta=0.1 * scale, threshold=param * scale)
    if kind == "KSWIN":
        return rdrift.KSWIN(alpha=param, window_size=100, stat_size=30, seed=7)
    raise UsageError(f"unknown drift detector {kind!r}")


def detector_state(det: Any) -> dict[str, float]:
    """The numbers that make up a river detector's state (to show, and to compare in tests)."""
    if isinstance(det, rdrift.ADWIN):
        return {
            "width": float(det.width),
            "estimation": float(det.estimation),
            "variance": float(det.variance),
            "detections": float(det.n_detections),
        }
    if isinstance(det, rdrift.PageHinkley):
        return {
            "mean": float(det._x_mean.get()),
            "sum_increase": float(det._sum_increase),
            "sum_decrease": float(det._sum_decrease),
        }
    if isinstance(det, rdrift.KSWIN):
        return {"n": float(det.n), "window_sum": float(sum(det.window))}
    raise UsageError(f"unknown drift detector {type(det).__name__}")


def _grid(kind: str) -> tuple[float, ...]:
    return {"ADWIN": ADWIN_GRID, "PageHinkley": PH_GRID, "KSWIN": KSWIN_GRID}[kind]


def estimate_arl(
    kind: str,
    param: float,
    scale: float,
    baseline: Sequence[float],
    length: int,
    rng: np.random.Generator,
) -> float:
    """Run length to false alarm on a bootstrap stream of ``length`` baseline draws."""
    det = make_detector(kind, param, scale)
    alarms = 0
    for x in rng.choice(np.asarray(baseline, dtype=float), size=length, replace=True):
        det.update(float(x))
        if det.drift_detected:
            alarms += 1
    return math.inf if alarms == 0 else length / alarms


def calibrate(
    kind: str, baseline: Sequence[float], arl0: float, seed: int = 0, stride: int = 1
) -> dict[str, float]:
    """The most sensitive setting of ``kind`` whose bootstrap ARL is at least ``arl0`` events."""
    if len(baseline) < 20:
        raise UsageError("drift calibration needs at least 20 baseline values")
    # A floor on the scale: a feature that was constant in the baseline (no flagged events yet)
    # must not alarm on its first small departure.
    scale = max(float(np.std(baseline)), SCALE_FLOOR)
    target = max(50.0, arl0 / stride)
    # KSWIN runs a KS test per update, so its bootstrap is shorter; with no alarm in ``length``
    # updates the run length is only known to exceed ``length`` (taken as meeting the target).
    # The estimate must clear the target by ``MARGIN``: a run length estimated from a handful of
    # alarms is noisy, and an under-estimated false-alarm rate is the costly mistake.
    length = int(min(4 * target, 1_000 if kind == "KSWIN" else 20_000))
    grid = _grid(kind)
    arls: dict[int, float] = {}

    def ok(i: int) -> bool:
        if i not in arls:
            rng = np.random.default_rng([seed, i])
            arls[i] = estimate_arl(kind, grid[i], scale, baseline, length, rng)
        return arls[i] >= MARGIN * target

    # The grid runs from most to least sensitive and the run length grows along it, so a
    # bisection finds the first setting that meets the target in log2(len(grid)) bootstraps.
    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    ok(lo)
    arl = arls[lo]
    bound = math.isinf(arl)
    return {
        "param": grid[lo],
        "scale": scale,
        "arl_estimate": (length if bound else arl) * stride,
        "arl_is_lower_bound": float(bound),
        "stride": stride,
    }


@dataclass
class Alarm:
    agent: str
    feature: str
    detector: str
    event_id: int
    value: float


@dataclass
class AgentDrift:
    """The drift detectors of one agent."""

    agent: str
    baseline_n: int
    arl0: float
    kswin_stride: int
    baseline: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FEATURES})
    baseline_tools: set[str] = field(default_factory=set)
    params: dict[str, dict[str, dict[str, float]]] | None = None
    detectors: dict[tuple[str, str], Any] = field(default_factory=dict)
    pending: Future[dict[str, dict[str, dict[str, float]]]] | None = None
    buffer: list[tuple[int, str, str | None, str | None, float, Extra | None]] = field(
        default_factory=list
    )
    n_seen: int = 0
    calibrated_from: int = 0
    alarms: int = 0
    last_alarm: Alarm | None = None

    @property
    def calibrated(self) -> bool:
        return self.params is not None

    def add_baseline(
        self,
        etype: str,
        content: str | None,
        tool: str | None,
        score: float,
        extra: Extra | None = None,
    ) -> None:
        """Add one event's values to the baseline (the fixed features and its evaluations)."""
        feats = features(etype, content, tool, score, None)
        for f in FEATURES:
            self.baseline[f].append(feats[f])
        for f, v in (extra or {}).items():
            if f not in FEATURES:
                self.baseline.setdefault(f, []).append(float(v))

    def install(
        self, params: dict[str, dict[str, dict[str, float]]], tools: set[str], from_event: int
    ) -> None:
        self.params = params
        self.baseline_tools = set(tools)
        self.calibrated_from = from_event
        self.detectors = {
            (f, k): make_detector(k, p["param"], p["scale"])
            for f, kinds in params.items()
            for k, p in kinds.items()
        }

    def feed(
        self,
        event_id: int,
        etype: str,
        content: str | None,
        tool: str | None,
        score: float,
        extra: Extra | None = None,
    ) -> list[Alarm]:
        """Feed one calibrated-phase event to every detector of the streams it has (the fixed
        features, and its evaluations' ``extra``); return the alarms it raised."""
        feats = features(etype, content, tool, score, frozenset(self.baseline_tools))
        if extra:
            feats = {**extra, **feats}
        self.n_seen += 1
        out = []
        for (f, k), det in self.detectors.items():
            if k == "KSWIN" and self.n_seen % self.kswin_stride:
                continue
            if f not in feats:
                continue
            det.update(feats[f])
            if det.drift_detected:
                out.append(Alarm(self.agent, f, k, event_id, feats[f]))
        self.alarms += len(out)
        if out:
            self.last_alarm = out[-1]
        return out


def _calibrate_all(
    baseline: dict[str, list[float]], arl0: float, stride: int, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Calibrate every detector of :data:`PLAN`. The target ``arl0`` is for the agent as a whole:
    with ``m`` detectors each gets ``m * arl0`` (a union bound on their false alarms)."""
    plan = dict(PLAN)
    plan.update(
        {f: EVAL_PLAN for f, v in baseline.items() if f not in PLAN and len(v) >= MIN_EVAL_BASELINE}
    )
    m = sum(len(k) for k in plan.values())
    out: dict[str, dict[str, dict[str, float]]] = {}
    for f, kinds in plan.items():
        out[f] = {}
        for k in kinds:
            s = stride if k == "KSWIN" else 1
            out[f][k] = calibrate(k, baseline[f], arl0 * m, seed=seed, stride=s)
    return out


@dataclass
class DriftWatch:
    """All agents' drift detectors for one tenant (or for ``tripwire watch``)."""

    baseline_n: int = 300
    arl0: float = 5000.0
    kswin_stride: int = 10
    seed: int = 0
    executor: Executor | None = None
    on_calibrated: Callable[[AgentDrift], None] | None = None
    agents: dict[str, AgentDrift] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.baseline_n < 30:
            raise UsageError("drift baseline must be at least 30 events")
        if self.arl0 < 10:
            raise UsageError("target ARL0 must be at least 10 events")

    def agent(self, name: str) -> AgentDrift:
        a = self.agents.get(name)
        if a is None:
            a = AgentDrift(name, self.baseline_n, self.arl0, self.kswin_stride)
            self.agents[name] = a
        return a

    def update(
        self,
        agent: str,
        event_id: int,
        etype: str,
        content: str | None,
        tool: str | None,
        score: float,
        extra: Extra | None = None,
    ) -> list[Alarm]:
        """Feed one committed event (``extra``: its evaluations' scores by stream name);
        return alarms (empty during baseline and calibration)."""
        a = self.agent(agent)
        if a.calibrated:
            return a.feed(event_id, etype, content, tool, score, extra)
        if a.pending is None:
            a.add_baseline(etype, content, tool, score, extra)
            if etype == "tool_call" and tool:
                a.baseline_tools.add(tool)
            if len(a.baseline["length"]) >= self.baseline_n:
                # new_tool is 0 throughout the baseline by definition; give ADWIN that stream.
                a.baseline["new_tool"] = [0.0] * len(a.baseline["length"])
                if self.executor is None:
                    params = _calibrate_all(a.baseline, self.arl0, self.kswin_stride, self.seed)
                    self._finish(a, params, event_id + 1)
                else:
                    a.pending = self.executor.submit(
                        _calibrate_all, a.baseline, self.arl0, self.kswin_stride, self.seed
                    )
            return []
        a.buffer.append((event_id, etype, content, tool, score, extra))
        if not a.pending.done():
            return []
        params = a.pending.result()
        a.pending = None
        start = a.buffer[0][0]
        buffered, a.buffer = a.buffer, []
        self._finish(a, params, start)
        out: list[Alarm] = []
        for row in buffered:
            out.extend(a.feed(*row))
        return out

    def _finish(
        self, a: AgentDrift, params: dict[str, dict[str, dict[str, float]]], from_event: int
    ) -> None:
        a.install(params, a.baseline_tools, from_event)
        if self.on_calibrated is not None:
            self.on_calibrated(a)

    def settle(self) -> list[Alarm]:
        """Install the calibrations that have finished and feed their buffered events, without
        waiting for the agent's next event (the service calls it when idle)."""
        out: list[Alarm] = []
        for a in list(self.agents.values()):
            if a.pending is not None and a.pending.done() and a.buffer:
                params = a.pending.result()
                a.pending = None
                buffered, a.buffer = a.buffer, []
                self._finish(a, params, buffered[0][0])
                for row in buffered:
                    out.extend(a.feed(*row))
        return out

    def flush(self, timeout: float = 60.0) -> list[Alarm]:
        """Wait for pending calibrations and feed their buffered events (tests, shutdown)."""
        out: list[Alarm] = []
        for a in list(self.agents.values()):
            if a.pending is not None:
                params = a.pending.result(timeout=timeout)
                a.pending = None
                buffered, a.buffer = a.buffer, []
                self._finish(a, params, buffered[0][0] if buffered else 0)
                for row in buffered:
                    out.extend(a.feed(*row))
        return out


def change_points(
    values: Sequence[float], penalty: float | None = None, min_size: int = 10
) -> list[int]:
    """Indices where the stream's mean changes: PELT with the L2 cost; ends excluded.

    The default penalty is BIC-like: ``3 * var * log(n)``. The same search as ruptures'
    ``Pelt(model="l2", jump=1)`` (same admissible set, same pruning, same tie-breaking), with each
    segment's cost from prefix sums and every candidate start of a step scored in one numpy
    expression: linear memory and milliseconds for 5,000 values, where ruptures copies a partition
    per candidate (tens of seconds). tests/runtime/test_drift.py compares the two.
    """
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    if n < 2 * min_size:
        return []
    var = float(np.var(arr)) or 1e-6
    pen = penalty if penalty is not None else 3.0 * var * math.log(n)
    return [b for b in _pelt_l2(arr, pen, min_size) if b < n]


def _pelt_l2(x: np.ndarray, pen: float, min_size: int) -> list[int]:
    """The breakpoints (segment ends, the last is ``len(x)``) minimising the sum of squared
    deviations from each segment's mean plus ``pen`` per segment."""
    n = len(x)
    x = x - x.mean()  # centred: the prefix sums lose less to cancellation
    s1 = np.concatenate(([0.0], np.cumsum(x)))
    s2 = np.concatenate(([0.0], np.cumsum(x * x)))
    best = np.zeros(n + 1)  # best[t]: the optimal penalised cost of x[:t]
    prev = np.zeros(n + 1, dtype=np.int64)
    adm = np.zeros(0, dtype=np.int64)
    for t in [*range(min_size, n), n]:
        start = t - min_size
        if start == 0 or start >= min_size:  # a segment x[start:t] may begin there
            adm = np.append(adm, start)
        length = t - adm
        seg = (s2[t] - s2[adm]) - (s1[t] - s1[adm]) ** 2 / length
        total = best[adm] + (np.maximum(seg, 0.0) + pen)
        i = int(np.argmin(total))
        best[t], prev[t] = total[i], adm[i]
        adm = adm[total <= best[t] + pen]  # PELT: these can never start a better segment
    bkps = [n]
    while (t := int(prev[bkps[-1]])) > 0:
        bkps.append(t)
    return bkps[::-1]


__all__ = [
    "FEATURES",
    "PLAN",
    "AgentDrift",
    "Alarm",
    "DriftWatch",
    "calibrate",
    "change_points",
    "detector_state",
    "estimate_arl",
    "features",
    "make_detector",
]
