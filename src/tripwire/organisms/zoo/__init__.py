"""The organism zoo: backdoored positive controls that vary every axis a real backdoor varies.

* :mod:`~tripwire.organisms.zoo.recipe` - the sixteen organisms (twelve ``dev``, four ``final``)
  and one benign fine-tune;
* :mod:`~tripwire.organisms.zoo.triggers` - trigger families and their near misses/confounders;
* :mod:`~tripwire.organisms.zoo.payloads` - behaviours and their checks;
* :mod:`~tripwire.organisms.zoo.pools` - the request pools;
* :mod:`~tripwire.organisms.zoo.build` - building one organism and its labelled eval set.

:func:`build_zoo` builds every organism not yet built (``tripwire organism zoo``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tripwire.organisms.zoo.build import ZooOrganism, build_organism, is_built, read_organism
from tripwire.organisms.zoo.recipe import RECIPE, ZooSpec, recipe


def build_zoo(
    base: str,
    out: str | Path,
    names: list[str] | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Build the recipe's organisms (or ``names``) on ``base`` into ``out``; skip finished ones.

    Returns one summary per organism: name, role, whether it was built now, seconds, rates.
    """
    from tripwire.models.loading import load_model

    say = progress or (lambda message: None)
    zoo = Path(out)
    zoo.mkdir(parents=True, exist_ok=True)
    specs = recipe(names)
    summaries: list[dict[str, Any]] = []
    spec_id = load_model(base, device=device).spec  # resolve the spec once (cached load)
    for k, spec in enumerate(specs, 1):
        if is_built(zoo, spec, spec_id):
            say(f"[{k}/{len(specs)}] {spec.name}: already built")
            card = read_organism(zoo / spec.name).card
            summaries.append({"name": spec.name, "role": spec.role, "built_now": False,
                              "seconds": card["seconds"], "rates": card["rates"]})  # fmt: skip
            continue
        t0 = time.perf_counter()
        say(f"[{k}/{len(specs)}] {spec.name}")
        card = build_organism(
            lambda: load_model(base, device=device), spec, zoo, progress=say, on_step=on_step
        )
        summaries.append({"name": spec.name, "role": spec.role, "built_now": True,
                          "seconds": round(time.perf_counter() - t0, 1),
                          "rates": card["rates"]})  # fmt: skip
    return summaries


def read_zoo(path: str | Path, roles: tuple[str, ...] | None = None) -> list[ZooOrganism]:
    """Every built organism under ``path`` (in recipe order), optionally only some roles."""
    zoo = Path(path)
    out = []
    for spec in RECIPE:
        if roles is not None and spec.role not in roles:
            continue
        if (zoo / spec.name / "card.json").is_file():
            out.append(read_organism(zoo / spec.name))
    return out


__all__ = [
    "RECIPE",
    "ZooOrganism",
    "ZooSpec",
    "build_organism",
    "build_zoo",
    "read_organism",
    "read_zoo",
    "recipe",
]
