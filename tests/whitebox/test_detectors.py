from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from tripwire.errors import NotFittedError, UsageError
from tripwire.stats import auroc
from tripwire.whitebox.detectors import (
    Detector,
    DiffMeans,
    LATProbe,
    LayerEnsemble,
    LogisticProbe,
    make_detector,
)


def planted(n: int = 400, d: int = 64, shift: float = 1.5, seed: int = 0) -> tuple[Any, Any, Any]:
    """Gaussian data with the classes separated along one planted unit direction."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    y = (rng.random(n) < 0.5).astype(int)
    X = rng.standard_normal((n, d)) + np.outer(y * shift, u)
    return X, y, u


ALL = [DiffMeans(), LogisticProbe(), LATProbe(), LayerEnsemble(n_layers=2)]


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_recovers_planted_direction(det: Detector) -> None:
    X, y, u = planted(shift=3.0)
    rng = np.random.default_rng(1)
    yte = (rng.random(400) < 0.5).astype(int)
    Xte = rng.standard_normal((400, 64)) + np.outer(yte * 3.0, u)  # held-out, same planted axis
    fitted = clone(det).fit(X, y)
    assert fitted is not det
    assert auroc(fitted.score_samples(Xte), yte) > 0.9
    if not isinstance(det, LayerEnsemble):
        assert abs(float(fitted.unit_direction @ u)) > 0.6


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_sklearn_contract(det: Detector) -> None:
    params = det.get_params()
    assert clone(det).get_params() == params
    assert not [k for k in vars(det) if k.endswith("_")], "__init__ must not set fitted state"
    with pytest.raises(NotFittedError, match="not fitted"):
        det.score_samples(np.zeros((2, 4)))
    X, y, _ = planted(n=60, d=8)
    fitted = clone(det).fit(X, y)
    assert fitted.n_features_in_ == 8
    preds = fitted.predict(X)
    assert set(np.unique(preds)) <= {0, 1}
    np.testing.assert_allclose(
        fitted.decision_function(X), fitted.score_samples(X) - fitted.offset_
    )
    with pytest.raises(ValueError):
        fitted.score_samples(np.zeros((2, 3)))  # wrong width


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_save_load_roundtrip_without_pickle(det: Detector, tmp_path: Any) -> None:
    X, y, _ = planted(n=80, d=16)
    fitted = clone(det).fit(X, y)
    fitted.save(tmp_path / "probe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.json", "probe.safetensors"]
    again = Detector.load(tmp_path / "probe")
    assert type(again) is type(det)
    np.testing.assert_allclose(again.score_samples(X), fitted.score_samples(X))


def test_load_errors(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match="no saved detector"):
        Detector.load(tmp_path / "missing")
    (tmp_path / "x.json").write_text('{"kind": "nope", "params": {}, "fitted": {}}')
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(UsageError, match="unknown detector kind"):
        Detector.load(tmp_path / "x")


def test_fit_rejects_one_class_and_bad_ensemble() -> None:
    with pytest.raises(ValueError, match="needs both classes in y, got 1 class"):
        DiffMeans().fit(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(UsageError, match="equal layers"):
        LayerEnsemble(n_layers=3).fit(np.zeros((4, 4)), np.array([0, 1, 0, 1]))
    with pytest.raises(UsageError, match="unknown detector"):
        make_detector("svm")
