"""The organism zoo: backdoored positive controls that vary every axis a real backdoor varies.

* :mod:`~tripwire.organisms.zoo.recipe` - the sixteen organisms (twelve ``dev``, four ``final``)
  and one benign fine-tune;
* :mod:`~tripwire.organisms.zoo.triggers` - trigger families and their near misses/confounders;
* :mod:`~tripwire.organisms.zoo.payloads` - behaviours and their checks;
* :mod:`~tripwire.organisms.zoo.pools` - the request pools;
* :mod:`~tripwire.organisms.zoo.build` - building one organism and its labelled eval set.

:func:`build_zoo` builds every organism not yet built (``tripwire organism zoo``), here or one
Ray task per organism (:func:`build_job`, given a mapper from :mod:`tripwire.scale`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tripwire.organisms.zoo.build import (
    ZooOrganism,
    build_organism,
    is_built,
    prime_base_answers,
    read_organism,
)
from tripwire.organisms.zoo.recipe import RECIPE, ZooSpec, recipe

#: ``mapper(fn, jobs, labels) -> [fn(job) for job in jobs]``, e.g. :class:`tripwire.scale.RayMap`.
Mapper = Callable[[Callable[[Any], Any], Sequence[Any], Sequence[str]], list[Any]]


@dataclass(frozen=True)
class ZooJob:
    """Build one organism into ``zoo`` (picklable: what one Ray task receives)."""

    base: str
    zoo: str
    spec: ZooSpec
    device: str = "cpu"


@dataclass(frozen=True)
class PrimeJob:
    """Fill the zoo's shared base-answer cache for ``specs`` (one task, before the builds)."""

    base: str
    zoo: str
    specs: tuple[ZooSpec, ...]
    device: str = "cpu"


def _summary(spec: ZooSpec, card: dict[str, Any], built_now: bool, seconds: float) -> dict:
    return {"name": spec.name, "role": spec.role, "built_now": built_now,
            "seconds": seconds, "rates": card["rates"]}  # fmt: skip


def build_job(job: ZooJob) -> dict[str, Any]:
    """Build one organism (resuming its ``.partial`` folder); its summary. The organism's folder
    appears in one rename when it is finished, so a killed attempt leaves no organism behind."""
    from tripwire.models.loading import load_model

    t0 = time.perf_counter()
    card = build_organism(lambda: load_model(job.base, device=job.device), job.spec, Path(job.zoo))
    return _summary(job.spec, card, True, round(time.perf_counter() - t0, 1))


def prime_job(job: PrimeJob) -> int:
    """:func:`~tripwire.organisms.zoo.build.prime_base_answers` on a freshly loaded base."""
    from tripwire.models.loading import load_model

    lm = load_model(job.base, device=job.device)
    return prime_base_answers(lm, job.specs, Path(job.zoo))


def build_zoo(
    base: str,
    out: str | Path,
    names: list[str] | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    mapper: Mapper | None = None,
    specs: Sequence[ZooSpec] | None = None,
) -> list[dict[str, Any]]:
    """Build the recipe's organisms (or ``names``, or the given ``specs``) on ``base`` into
    ``out``; skip finished ones.

    With a ``mapper`` (``RayMap``) every organism still to build is one task: first one task
    primes the shared cache of base answers exactly as a serial build would fill it, then the
    organisms build in parallel, each writing its own folder; the summaries are the serial
    run's. ``out`` must then be on storage every worker sees.

    Returns one summary per organism: name, role, whether it was built now, seconds, rates.
    """
    from tripwire.models.loading import load_model

    say = progress or (lambda message: None)
    zoo = Path(out)
    zoo.mkdir(parents=True, exist_ok=True)
    chosen = list(specs) if specs is not None else recipe(names)
    # The spec a model loads as is the spec given; the serial build loads it once up front.
    spec_id = base if mapper is not None else load_model(base, device=device).spec
    summaries: dict[str, dict[str, Any]] = {}
    todo: list[ZooSpec] = []
    for k, spec in enumerate(chosen, 1):
        if is_built(zoo, spec, spec_id):
            say(f"[{k}/{len(chosen)}] {spec.name}: already built")
            card = read_organism(zoo / spec.name).card
            summaries[spec.name] = _summary(spec, card, False, card["seconds"])
            continue
        if mapper is not None:
            todo.append(spec)
            continue
        t0 = time.perf_counter()
        say(f"[{k}/{len(chosen)}] {spec.name}")
        card = build_organism(
            lambda: load_model(base, device=device), spec, zoo, progress=say, on_step=on_step
        )
        summaries[spec.name] = _summary(spec, card, True, round(time.perf_counter() - t0, 1))
    if mapper is not None and todo:
        say(f"the base model's answers for {len(todo)} organisms (one task)")
        mapper(prime_job, [PrimeJob(base, str(zoo), tuple(todo), device)], ["base answers"])
        jobs = [ZooJob(base, str(zoo), spec, device) for spec in todo]
        for s in mapper(build_job, jobs, [spec.name for spec in todo]):
            summaries[s["name"]] = s
    return [summaries[spec.name] for spec in chosen]


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
    "PrimeJob",
    "ZooJob",
    "ZooOrganism",
    "ZooSpec",
    "build_job",
    "build_organism",
    "build_zoo",
    "read_organism",
    "prime_job",
    "read_zoo",
    "recipe",
]
