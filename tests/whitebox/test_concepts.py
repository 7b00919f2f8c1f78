from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tripwire.errors import DataError, UsageError
from tripwire.whitebox.capture import Activations
from tripwire.whitebox.concepts import ConceptVector, extract_concepts, fit_concept, trace
from tripwire.whitebox.datasets import (
    CONCEPTS,
    concept_pairs,
    defection_dialogues,
    honesty_dialogues,
    load_eval_file,
    neutral_prompts,
    pressure_pairs,
)


def test_shipped_data_is_complete() -> None:
    assert len(CONCEPTS) >= 12
    for name in CONCEPTS:
        pairs = concept_pairs(name)
        assert len(pairs) >= 48
        assert len({p.positive for p in pairs}) == len(pairs)
    assert len(neutral_prompts()) >= 200
    kinds = {p["kind"] for p in pressure_pairs()}
    assert kinds == {"impossible_task", "shutdown"}


def test_dialogue_builders_pair_and_label(tokenizer: Any) -> None:
    for build in (defection_dialogues, honesty_dialogues):
        texts, labels = build(tokenizer)
        assert len(texts) == len(labels) and len(texts) % 2 == 0
        assert labels[0::2] == [1] * (len(labels) // 2) and labels[1::2] == [0] * (len(labels) // 2)
        for r in texts[:6]:
            assert r.span is not None and r.text[r.span[0] : r.span[1]].strip()


def _synthetic(n_pairs: int = 40, d: int = 16, layers: tuple[int, ...] = (0, 1, 2)) -> Any:
    rng = np.random.default_rng(0)
    u = np.eye(d)[3]
    y = np.r_[np.ones(n_pairs), np.zeros(n_pairs)].astype(int)
    pid = np.r_[np.arange(n_pairs), np.arange(n_pairs)]
    data = {}
    for layer in layers:
        strength = 3.0 if layer == 1 else 0.2  # only layer 1 carries the concept
        data[layer] = (rng.standard_normal((2 * n_pairs, d)) + np.outer(y * strength, u)).astype(
            np.float32
        )
    acts = Activations(layers=list(layers), positions="mean", n_samples=2 * n_pairs, _data=data)
    return acts, y, pid, u


def test_fit_concept_chooses_the_informative_layer_without_peeking() -> None:
    acts, y, pid, u = _synthetic()
    test = np.isin(pid, np.arange(30, 40))
    vec, ev = fit_concept("demo", acts, y, pid, test)
    assert ev.best_layer == 1 and vec.layer == 1
    assert ev.auroc > 0.9 and ev.auroc_ci[0] <= ev.auroc <= ev.auroc_ci[1]
    assert ev.random_baseline_auroc < ev.auroc
    assert abs(vec.direction @ u) > 0.8
    assert ev.n_test_pairs == 10 and ev.n_train_pairs == 30


def test_concept_vector_roundtrip(tmp_path: Any) -> None:
    acts, y, pid, _ = _synthetic()
    vec, _ = fit_concept("demo", acts, y, pid, np.isin(pid, np.arange(30, 40)))
    vec.neutral_mean, vec.neutral_std = 0.5, 2.0
    vec.save(tmp_path / "demo")
    again = ConceptVector.load(tmp_path / "demo")
    X = acts[1]
    np.testing.assert_allclose(again.zscore(X), vec.zscore(X))
    np.testing.assert_allclose(again.direction, vec.direction, rtol=1e-6)
    with pytest.raises(UsageError, match="no saved concept vector"):
        ConceptVector.load(tmp_path / "other")


def test_extract_and_trace_on_a_tiny_model(tiny: Any) -> None:
    results = extract_concepts(tiny, ["joy", "fear"], test_pairs=24, n_neutral=16)
    assert [v.name for v, _ in results] == ["joy", "fear"]
    for _, ev in results:
        assert 0 <= ev.best_layer < tiny.n_layers
        assert len(ev.per_layer) == tiny.n_layers
        assert ev.n_test_pairs == 24
    tr = trace(
        tiny, [v for v, _ in results], tiny.prompt("Tell me about your day."), max_new_tokens=5
    )
    assert len(tr.tokens) == len(tr.scores["joy"]) == len(tr.scores["fear"])
    assert tr.n_prompt_tokens < len(tr.tokens)
    with pytest.raises(UsageError, match="unknown concept"):
        extract_concepts(tiny, ["boredom"])


def test_eval_file_contract(tmp_path: Any) -> None:
    good = tmp_path / "eval.jsonl"
    good.write_text('{"prompt": "a", "label": 1}\n{"prompt": "b", "label": 0}\n')
    assert load_eval_file(good) == (["a", "b"], [1, 0])
    for text, message in [
        ('{"prompt": "a"}\n', "missing field 'label'"),
        ('{"prompt": "a", "label": 2}\n', "label must be 0 or 1"),
        ('{"prompt": "a", "label": true}\n', "wrong type"),
        ("not json\n", "not valid JSON"),
        ("", "holds no rows"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(DataError, match=message):
            load_eval_file(bad)
