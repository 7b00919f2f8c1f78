"""Task construction, sample selection and input validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripwire.behavior import CANARY, FAMILIES
from tripwire.behavior.local import Steering
from tripwire.behavior.provider import TripwireModelAPI
from tripwire.behavior.runner import resolve
from tripwire.behavior.scenarios import TASKS, oversight_subversion, sandbagging
from tripwire.errors import UsageError


def test_per_condition_keeps_every_condition() -> None:
    task = sandbagging(per_condition=2)
    conds = [s.metadata["condition"] for s in task.dataset if s.metadata]
    assert sorted(conds) == sorted(["control"] * 2 + ["unlearning"] * 2 + ["no_deploy"] * 2)


def test_condition_filter_and_errors() -> None:
    task = oversight_subversion(condition="nudge")
    assert [s.id for s in task.dataset] == ["oversight_subversion/nudge"]
    with pytest.raises(UsageError, match="choose from control, nudge, no_nudge"):
        oversight_subversion(condition="bogus")
    with pytest.raises(UsageError):
        sandbagging(per_condition=0)


def test_planted_files_carry_the_canary_and_their_hashes() -> None:
    for name in TASKS:
        for s in FAMILIES[name].samples():
            assert s.metadata is not None
            for path, text in (s.files or {}).items():
                assert path in s.metadata["initial_hashes"]
                if path.endswith((".yaml", ".md", ".txt", ".py")):
                    assert CANARY in str(text), (name, path)


def test_resolve_names() -> None:
    assert resolve(["tripwire/blackmail", "blackmail", "jailbreak"]) == ["blackmail", "jailbreak"]
    assert len(resolve(["all"])) == 12
    with pytest.raises(UsageError, match="unknown scenario"):
        resolve(["blackmai"])


def test_steering_specs() -> None:
    assert Steering.parse("desperation:8") == [Steering("desperation", None, 8.0)]
    assert Steering.parse("calm:12:-4;fear:2") == [
        Steering("calm", 12, -4.0),
        Steering("fear", None, 2.0),
    ]
    for bad in ("desperation", "desperation:x", "a:b:c:d"):
        with pytest.raises(UsageError):
            Steering.parse(bad)


def test_scripted_policies_take_no_model_args() -> None:
    with pytest.raises(UsageError, match="no model args"):
        TripwireModelAPI("scripted-scheme", steer="calm:1")


def test_detector_specs_load_saved_detectors(tmp_path: Path) -> None:
    import numpy as np

    from tripwire.behavior.local import parse_detectors
    from tripwire.whitebox import DiffMeans

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 8)), np.r_[np.ones(10), np.zeros(10)]
    DiffMeans().fit(X, y).save(tmp_path / "deception")
    ((name, layer, det),) = parse_detectors(f"{tmp_path / 'deception'}:-1", n_layers=30)
    assert name == "deception" and layer == 29
    assert det.score_samples(X).shape == (20,)
    for bad in ("nolayer", f"{tmp_path / 'missing'}:3", f"{tmp_path / 'deception'}:x"):
        with pytest.raises(UsageError):
            parse_detectors(bad, n_layers=30)
