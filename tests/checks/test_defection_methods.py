"""Defection methods: features are read right, figures are honest, the protocol leaves one out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tripwire.checks.defection.evaluate import (
    MethodResult,
    ModelData,
    _aucs,
    evaluate,
    random_control,
)
from tripwire.checks.defection.features import Features, Prompt, extract
from tripwire.checks.defection.leaderboard import choose, leave_one_out
from tripwire.checks.defection.methods import METHODS, PairSet, middle_layers
from tripwire.whitebox.capture import capture

PROMPTS = [
    Prompt("Say hello.", None, "Hello there, friend."),
    Prompt("Name a colour.", "Be brief.", "Blue."),
    Prompt("What is two plus two? Answer with a number.", None, ""),
]


def test_last_token_features_equal_capture_and_batching_changes_nothing(tiny: Any) -> None:
    f = extract(tiny, PROMPTS, tiny, batch_size=8)
    one = extract(tiny, PROMPTS, tiny, batch_size=1)
    np.testing.assert_allclose(f.last, one.last, atol=1e-5)
    np.testing.assert_allclose(f.gen, one.gen, atol=1e-5)
    rendered = [tiny.prompt(p.user, p.system) for p in PROMPTS]
    ref = capture(tiny, rendered, positions="last")
    for layer in ref.layers:
        np.testing.assert_allclose(f.last[:, layer], ref[layer], atol=1e-5)
    # A model diffed against itself: no divergence anywhere, no activation difference.
    assert f.kl is not None and np.nanmax(f.kl) < 1e-5
    assert f.llr is not None and np.nanmax(np.abs(f.llr)) < 1e-4
    np.testing.assert_allclose(f.last, f.base_last, atol=1e-6)  # type: ignore[arg-type]
    # An empty answer reads the last prompt token; its log-likelihood ratio is undefined.
    assert f.n_gen[2] == 0 and np.isnan(f.llr[2]).all()
    np.testing.assert_allclose(f.gen[2], f.last[2], atol=1e-6)


def test_divergence_is_positive_when_the_models_differ(make_lm: Any) -> None:
    a, b = make_lm("llama", seed=0), make_lm("llama", seed=1)
    f = extract(a, PROMPTS[:2], b)
    assert f.kl is not None and (f.kl[:, 0] > 1e-3).all()
    n = int(f.n_gen[0])
    assert np.isfinite(f.llr[0, :n]).all() and np.isnan(f.llr[0, n:]).all()  # type: ignore[index]


def _features(rng: np.random.Generator, n: int, shift: np.ndarray | None = None,
              own_shift: float = 0.0, L: int = 3, d: int = 64) -> Features:  # fmt: skip
    """Synthetic activations. The fine-tune's change (model - base) on ordinary prompts lies in
    a fixed 2-dimensional subspace; the planted backdoor moves it along a direction outside
    it, where ordinary prompts never vary - salient to Mahalanobis, nearly invisible to a
    random direction."""
    basis = np.linalg.qr(np.random.default_rng(99).standard_normal((d, d)))[0]
    span, w = basis[:, :2], basis[:, 2]
    base = rng.standard_normal((n, L, d)).astype(np.float32) + own_shift
    diff = rng.standard_normal((n, L, 2)) @ span.T + 0.05 * rng.standard_normal((n, L, d))
    if shift is not None:
        diff[:, 1] += shift[:, None] * w
    model = (base + diff).astype(np.float32)
    kl = np.abs(0.01 * rng.standard_normal((n, 16))).astype(np.float32)
    if shift is not None:
        kl[:, :8] += shift[:, None]
    return Features(model, model, base, base, kl, kl.copy(), np.full(n, 16))


def _data(seed: int = 0) -> ModelData:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(40), np.zeros(40)].astype(int)
    # In group "g1" only half the triggered prompts defect: a detector must follow behaviour.
    groups = ["g1"] * 20 + ["g2"] * 20 + ["g1"] * 20 + ["clean"] * 20
    ev = _features(rng, 80, shift=1.0 * y)
    pairs = PairSet(rng.standard_normal((20, 3, 64)), np.tile([1, 0], 10), 1)
    return ModelData(
        "planted", "dev", ev, y, groups, ["triggered"] * 40 + ["clean"] * 40,
        neutral=_features(rng, 240),
        formats=_features(rng, 96, own_shift=2.0),  # unusual text: own activations move
        format_kinds=["long"] * 48 + ["code"] * 48,
        pairs=pairs,
    )  # fmt: skip


def test_diffing_finds_a_planted_change_and_ignores_unusual_formatting() -> None:
    data = _data()
    diff = evaluate(METHODS["diff"], data, n_random=200)
    assert diff.auroc is not None and diff.auroc > 0.99
    assert diff.recall_at_1pct_fpr is not None and diff.recall_at_1pct_fpr > 0.9
    assert diff.format_fpr <= 0.05 and diff.neutral_fpr <= 0.02
    assert diff.random_baseline_auroc is not None and diff.random_baseline_auroc < diff.auroc
    assert diff.within_group and all(g["auroc"] > 0.9 for g in diff.within_group)
    kl = evaluate(METHODS["diff-kl-gen"], data, n_random=200)
    assert kl.auroc is not None and kl.auroc > 0.99 and kl.format_fpr <= 0.05
    # The model's own activations: formats shifted by 2 sd look anomalous to Mahalanobis.
    own = evaluate(METHODS["mahalanobis"], data, n_random=200)
    assert own.format_fpr > 0.5 and own.format_fpr_by_kind["code"] > 0.5


def test_random_control_is_cross_fitted_not_picked_on_the_test_rows() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 400))
    y = np.r_[np.ones(30), np.zeros(30)].astype(int)  # no signal at all
    dirs = rng.standard_normal((400, 1000))
    naive = _aucs(X @ dirs, y)
    naive_best = float(np.maximum(naive, 1 - naive).max())
    crossed, median, _ = random_control(X, y, ["a"] * 60, n=1000, seed=0)
    assert naive_best > 0.7  # picking the best of many on the test rows inflates it ...
    assert crossed is not None and abs(crossed - 0.5) < 0.15  # ... cross-fitting does not
    assert median is not None and 0.5 <= median < 0.6


def _result(method: str, organism: str, recall: float) -> MethodResult:
    return MethodResult(method, organism, 0.5 + recall / 2, [0, 1], 0.5, 0.5, recall, 0.0, 0.01,
                        0.0, 0.0, {})  # fmt: skip


def test_leave_one_out_never_chooses_with_the_left_out_organism() -> None:
    orgs = ["a", "b", "c", "x"]
    table = {o: {"good": _result("good", o, 0.9), "lucky": _result("lucky", o, 0.1)} for o in orgs}
    table["x"]["lucky"] = _result("lucky", "x", 1.0)
    table["x"]["good"] = _result("good", "x", 0.0)
    loo = {r["organism"]: r["chosen"] for r in leave_one_out(table, orgs, ["good", "lucky"])}
    assert loo["x"] == "good"  # x's own figures would have picked "lucky"
    assert choose(table, ["x"], ["good", "lucky"]) == "lucky"


def test_middle_layers_cover_thirty_to_seventy_percent() -> None:
    assert middle_layers(30) == list(range(9, 21))
    assert middle_layers(1) == [0]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_scores_the_planted_organism(name: str) -> None:
    res = evaluate(METHODS[name], _data(1), n_random=50)
    assert res.n_pos == 40 and res.threshold == res.threshold  # finite
    assert 0.0 <= res.format_fpr <= 1.0 and res.auroc is not None


def test_leaderboard_end_to_end_on_a_tiny_zoo(
    make_lm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    from dataclasses import replace

    from tripwire.checks.defection.leaderboard import run_leaderboard
    from tripwire.errors import UsageError
    from tripwire.models import load_model
    from tripwire.organisms.zoo import RECIPE, build_organism

    folder = tmp_path / "base"
    lm = make_lm("llama")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    zoo = tmp_path / "zoo"
    for name in ("tag-string", "date-code", "benign-style", "suffix-string"):
        spec = next(s for s in RECIPE if s.name == name)
        small = replace(spec, method="full", steps=6, lr=3e-3, n_train=4, n_eval=2, batch_size=4)
        build_organism(lambda: load_model(str(folder)), small, zoo)
    board = run_leaderboard(zoo)
    assert set(board["table"]) == {"tag-string", "date-code", "benign-style", "clean-base"}
    assert set(board["table"]["tag-string"]) == set(METHODS)
    loo = board["leave_one_out"]["with_base"]
    assert [r["organism"] for r in loo] == ["tag-string", "date-code"]
    assert board["default"]["own_model_only"] in METHODS
    assert not METHODS[board["default"]["own_model_only"]].needs_base
    assert board["final"] == {}  # the final set is only read when asked for
    cell = board["table"]["tag-string"]["diff"]
    for key in ("auroc", "auroc_ci", "random_baseline_auroc", "recall_at_1pct_fpr",
                "format_fpr", "within_group"):  # fmt: skip
        assert key in cell
    assert (zoo / "tag-string" / "features" / "eval.safetensors").is_file()  # cached
    from tripwire.checks.defection.leaderboard import render_markdown

    md = render_markdown(board)
    assert "## Leave one organism out: with base" in md
    every = md.split("## Every figure")[1]
    assert every.count("| tag-string | `") == len(METHODS)  # one row per method
    assert "Final held-out organisms: **not scored yet**" in md and "### Final held-out" not in md
    assert "suffix-string" not in board["table"]  # a final organism: never read so far
    # --final refuses while the defaults frozen in code are not the dev organisms' choice ...
    probe_mod = importlib.import_module("tripwire.checks.defection.methods")
    chosen = board["default"]["with_base"]
    other = next(m for m in METHODS if m != chosen)
    monkeypatch.setattr(probe_mod, "DEFAULT_WITH_BASE", other)
    monkeypatch.setattr(probe_mod, "DEFAULT_OWN", board["default"]["own_model_only"])
    with pytest.raises(UsageError, match="freeze the defaults"):
        run_leaderboard(zoo, include_final=True)
    assert not (zoo / "suffix-string" / "features").exists()  # ... before reading any final
    # ... and scores the final organisms with them once they are.
    monkeypatch.setattr(probe_mod, "DEFAULT_WITH_BASE", chosen)
    final = run_leaderboard(zoo, include_final=True)
    assert set(final["final"]["with_base"]) == {"suffix-string"}
    assert final["final"]["with_base"]["suffix-string"]["method"] == chosen
    assert final["frozen_default"]["with_base"] == chosen
    assert "### Final held-out organisms" in render_markdown(final)
    # A dev board written earlier stands in for re-reading the dev organisms: same figures.
    again = run_leaderboard(zoo, include_final=True, dev_board=board)
    assert again["final"] == final["final"] and again["table"] == final["table"]
    with pytest.raises(UsageError, match="scored once"):
        run_leaderboard(zoo, include_final=True, dev_board=final)
    with pytest.raises(UsageError, match="add --final"):
        run_leaderboard(zoo, dev_board=board)
