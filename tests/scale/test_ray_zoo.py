"""``organism zoo --ray``: one Ray task per organism builds the same zoo as the serial run, and
an organism whose worker is killed mid-build is rebuilt with nothing partial left behind."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tripwire.organisms.zoo import RECIPE, ZooSpec, build_zoo

NAMES = ("tag-string", "rareword-wrong", "system-string", "benign-style")


def _tiny_specs() -> list[ZooSpec]:
    by_name = {s.name: s for s in RECIPE}
    missing = [n for n in NAMES if n not in by_name]
    assert not missing, f"the recipe lost {missing}; pick other organisms for this test"
    return [
        replace(by_name[n], method="full", steps=3, lr=3e-3, n_train=4, n_eval=2, batch_size=4)
        for n in NAMES
    ]


def _zoo(path: Path) -> dict[str, Any]:
    """Everything a zoo folder holds, less the wall-clock seconds."""
    out: dict[str, Any] = {"entries": sorted(p.name for p in path.iterdir())}
    for name in NAMES:
        card = json.loads((path / name / "card.json").read_text())
        card.pop("seconds")
        out[name] = {"card": card, "eval": (path / name / "eval.jsonl").read_text()}
    out["answers"] = json.loads((path / "_base" / "answers.json").read_text())
    return out


@pytest.fixture(scope="module")
def serial_zoo(
    tiny_folders: tuple[Path, list[Path]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each 1-CPU Ray task runs
    try:
        zoo = tmp_path_factory.mktemp("serial-zoo")
        return zoo, build_zoo(str(tiny_folders[0]), zoo, specs=_tiny_specs())
    finally:
        torch.set_num_threads(before)


def _no_seconds(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "seconds"} for s in summaries]


def test_the_zoo_on_ray_is_the_serial_zoo(
    ray_cluster: Any,
    tiny_folders: tuple[Path, list[Path]],
    serial_zoo: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    from tripwire.scale import RayMap

    done: list[str] = []
    mapper = RayMap(progress=lambda d, t, m: done.append(m))
    got = build_zoo(str(tiny_folders[0]), tmp_path, specs=_tiny_specs(), mapper=mapper)
    assert _no_seconds(got) == _no_seconds(serial_zoo[1])
    assert [s["name"] for s in got] == list(NAMES) and all(s["built_now"] for s in got)
    assert _zoo(tmp_path) == _zoo(serial_zoo[0])
    assert {f"{n} done" for n in NAMES} <= set(done)
    again = build_zoo(str(tiny_folders[0]), tmp_path, specs=_tiny_specs(), mapper=mapper)
    assert not any(s["built_now"] for s in again)  # resumable on Ray too


def _killed_once_mid_training(name: str, marker: Path) -> Any:
    """Build an organism; the first attempt at ``name`` kills its worker in training step 2."""

    def job(j: Any) -> Any:
        from tripwire.models.loading import load_model
        from tripwire.organisms.zoo import build_job, build_organism

        if j.spec.name != name or marker.exists():
            return build_job(j)

        def die(step: int, total: int, loss: float) -> None:
            if step == 2:
                marker.write_text(str(os.getpid()))
                os._exit(1)

        build_organism(lambda: load_model(j.base), j.spec, Path(j.zoo), on_step=die)
        raise AssertionError("the worker should have died in training")

    return job


def test_a_worker_killed_mid_build_is_rebuilt_to_the_same_organism(
    ray_cluster: Any,
    tiny_folders: tuple[Path, list[Path]],
    serial_zoo: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    from tripwire.organisms.zoo import build_job
    from tripwire.scale import RayMap, Resources

    marker = tmp_path / "died"
    zoo = tmp_path / "zoo"

    class Killing(RayMap):
        def __call__(self, fn: Any, jobs: Any, labels: Any = None) -> list[Any]:
            if fn is build_job:
                fn = _killed_once_mid_training("rareword-wrong", marker)
            return super().__call__(fn, jobs, labels)

    got = build_zoo(
        str(tiny_folders[0]), zoo, specs=_tiny_specs(), mapper=Killing(Resources(max_retries=2))
    )
    assert marker.exists(), "the worker was never killed"
    assert _no_seconds(got) == _no_seconds(serial_zoo[1])
    assert _zoo(zoo) == _zoo(serial_zoo[0])  # no .partial, no temporary folder left
