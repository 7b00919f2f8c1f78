"""What the checks share: their shipped data files, seeded subsets, the layer-choice rule."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np


def data_file(name: str) -> Path:
    """A file shipped in ``tripwire/checks/data``."""
    return Path(str(resources.files("tripwire.checks").joinpath("data", name)))


CV_LAYER_RULE = (
    "the layer with the highest cross-validated AUROC on the training split (folds split by "
    "frame / by request-and-template group); the test split is never used"
)


def limit_rows(rows: list[Any], limit: int | None, seed: int, key: str | None = None) -> list[Any]:
    """A seeded subset of ``limit`` rows (stratified by ``key`` when given), in file order."""
    if limit is None or limit >= len(rows):
        return rows
    rng = np.random.default_rng(seed)
    if key is None:
        keep = set(rng.permutation(len(rows))[:limit].tolist())
    else:
        keep = set()
        values = sorted({r[key] for r in rows})
        for v in values:
            idx = [i for i, r in enumerate(rows) if r[key] == v]
            share = max(2, limit // len(values))
            keep |= set(rng.permutation(idx)[:share].tolist())
    return [r for i, r in enumerate(rows) if i in keep]


__all__ = ["CV_LAYER_RULE", "data_file", "limit_rows"]
