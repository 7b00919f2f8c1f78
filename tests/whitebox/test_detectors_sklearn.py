"""Every detector passes scikit-learn's own estimator checks, and works inside its tools."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.exceptions import SkipTestWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from tripwire.errors import NotFittedError
from tripwire.whitebox.detectors import (
    DETECTORS,
    Detector,
    DetectorNotFitted,
    DiffMeans,
    LATProbe,
    LayerEnsemble,
    LogisticProbe,
    MahalanobisDetector,
    ZScoreDetector,
    suspicion,
)

ALL = [
    DiffMeans(),
    LogisticProbe(),
    LATProbe(),
    LayerEnsemble(),
    MahalanobisDetector(),
    ZScoreDetector(),
]


def test_every_registered_detector_is_checked() -> None:
    assert {type(d).kind for d in ALL} == set(DETECTORS)


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_sklearn_check_estimator_passes_every_check(det: Any) -> None:
    """scikit-learn's own suite. Two of its checks do not apply here and report themselves as
    skipped inside it (array-API input needs SCIPY_ARRAY_API; pandas input needs pandas)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)
        results = check_estimator(det, on_fail=None)
    failed = [
        (r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"
    ]
    ran = [r for r in results if r["status"] == "passed"]
    assert failed == []
    assert len(ran) >= 40
    not_run = {r["check_name"] for r in results if r["status"] == "skipped"}
    optional = {  # checks that need pandas or the array API, neither installed here
        "check_array_api_input",
        "check_classifier_data_not_an_array",
        "check_estimators_dtypes_pandas",
        "check_dataframe_column_names_consistency",
        "check_n_features_in_after_fitting_pandas",
        "check_pandas_series",
    }
    assert not_run <= optional


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_not_fitted_is_both_errors(det: Any) -> None:
    from sklearn.exceptions import NotFittedError as SklearnNotFitted

    with pytest.raises(DetectorNotFitted) as info:
        det.score_samples(np.zeros((2, 3)))
    assert isinstance(info.value, NotFittedError) and isinstance(info.value, SklearnNotFitted)


def test_classifiers_reject_continuous_and_multiclass_targets() -> None:
    X = np.random.default_rng(0).standard_normal((12, 3))
    with pytest.raises(ValueError, match="Unknown label type"):
        DiffMeans().fit(X, np.linspace(0, 1, 12))
    with pytest.raises(ValueError, match="Only binary classification"):
        DiffMeans().fit(X, np.arange(12) % 3)


def test_classifiers_drop_into_pipelines_and_cross_validation() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(40), np.zeros(40)]
    X = rng.standard_normal((80, 6))
    X[:, 2] += 2.5 * y
    pipe = make_pipeline(StandardScaler(), LogisticProbe())
    assert cross_val_score(pipe, X, y, cv=4, scoring="roc_auc").mean() > 0.9
    grid = GridSearchCV(LogisticProbe(), {"C": [0.01, 1.0]}, cv=3, scoring="roc_auc").fit(X, y)
    assert grid.best_score_ > 0.9


def test_mahalanobis_flags_rows_unlike_the_trusted_ones_and_names_the_block() -> None:
    rng = np.random.default_rng(2)
    trusted = rng.standard_normal((150, 3 * 8))
    det = MahalanobisDetector(n_blocks=3).fit(trusted)
    normal = rng.standard_normal((50, 24))
    odd = rng.standard_normal((50, 24)) + 2.0
    s_normal, s_odd = suspicion(det, normal), suspicion(det, odd)
    assert s_odd.min() > np.percentile(s_normal, 99)
    one = rng.standard_normal((50, 24))
    one[:, 16:] += 3.0  # only the last block moved
    z = det.block_z(one)
    assert z.shape == (50, 3) and z[:, 2].mean() > 3 and abs(z[:, :2].mean()) < 1
    # Out-of-fold scaling: fresh trusted rows score like the training rows, not worse.
    fresh = suspicion(det, rng.standard_normal((150, 24)))
    assert abs(np.median(fresh) - np.median(suspicion(det, trusted))) < 0.5


def test_zscore_is_one_sided() -> None:
    det = ZScoreDetector(log=True).fit(np.abs(np.random.default_rng(3).standard_normal((200, 1))))
    low, high = suspicion(det, np.array([[0.0]])), suspicion(det, np.array([[8.0]]))
    assert high[0] > 3 > low[0]
    assert det.predict(np.array([[8.0]]))[0] == -1


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_save_load_round_trip_for_every_kind(det: Any, tmp_path: Any) -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(int)
    fitted = (
        det.fit(X, y)
        if hasattr(det, "classes_") or not hasattr(det, "contamination")
        else (det.fit(X))
    )
    fitted.save(tmp_path / "d")
    again = Detector.load(tmp_path / "d")
    assert type(again) is type(fitted)
    np.testing.assert_allclose(again.score_samples(X), fitted.score_samples(X))
    assert (again.predict(X) == fitted.predict(X)).all()
