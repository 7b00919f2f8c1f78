"""``tripwire drift --ray``: one Ray task per checkpoint gives the serial run's JSON, a killed
worker is retried without changing it, and a bad ``--ray`` is one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tripwire.cli import app

runner = CliRunner()


def _drift_args(base: Path, adapters: list[Path], out: Path) -> list[str]:
    args = ["drift", "--model", str(base), "--concepts", "hostility,joy", "--n-pairs", "8"]
    args += ["--limit", "12", "--n-random", "50", "--out", str(out)]
    for a in adapters:
        args += ["--checkpoint", str(a)]
    return args


def _result(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    for key in ("seconds", "ray"):
        data["meta"].pop(key)
    return data


def test_drift_on_ray_equals_the_serial_run(
    ray_cluster: Any, tiny_folders: tuple[Path, list[Path]], tmp_path: Path, one_thread: None
) -> None:
    base, adapters = tiny_folders
    serial = runner.invoke(app, _drift_args(base, adapters, tmp_path / "serial.json"))
    assert serial.exit_code == 0, serial.output
    on_ray = runner.invoke(app, [*_drift_args(base, adapters, tmp_path / "ray.json"), "--ray"])
    assert on_ray.exit_code == 0, on_ray.output
    a, b = _result(tmp_path / "serial.json"), _result(tmp_path / "ray.json")
    assert a == b
    assert a["checkpoints"] == [p.name for p in adapters]
    assert all(r["drift_z"] != 0.0 for r in a["drift"])  # every adapter moved the model
    assert json.loads((tmp_path / "ray.json").read_text())["meta"]["ray"] == "local"


def _dies_once_on(label: str, marker: Path) -> Any:
    """A read job whose first attempt on ``label`` kills its own worker process (a closure,
    so Ray ships it by value; the marker file says the first attempt happened)."""

    def job(j: Any) -> Any:
        from tripwire.checks.checkpoint_drift import read_job

        if j.label == label and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-run, as a SIGKILL or an OOM kill would leave it
        return read_job(j)

    return job


def test_a_killed_worker_is_retried_and_the_reads_are_the_same(
    ray_cluster: Any, tiny_folders: tuple[Path, list[Path]], tmp_path: Path, one_thread: None
) -> None:
    from tripwire.checks.checkpoint_drift import ReadJob, read_job
    from tripwire.models.loading import ModelRef, load_model
    from tripwire.scale import RayMap, Resources

    base, adapters = tiny_folders
    marker = tmp_path / "died"
    lm = load_model(str(base))
    prompts = [lm.prompt(t) for t in ("Hello there.", "How do magnets work?", "Name a fruit.")]
    jobs = [ReadJob(p.name, ModelRef(str(base), str(p)), prompts, [1, 2]) for p in adapters]
    labels = [j.label for j in jobs]
    seen: list[tuple[int, int, str]] = []
    mapper = RayMap(Resources(max_retries=2), lambda d, t, m: seen.append((d, t, m)))
    got = mapper(_dies_once_on("adapter-2", marker), jobs, labels)
    assert marker.exists(), "the worker was never killed"
    want = [read_job(j) for j in jobs]
    for g, w in zip(got, want, strict=True):
        assert sorted(g) == sorted(w)
        for layer in w:
            np.testing.assert_array_equal(g[layer], w[layer])
    assert seen[-1][:2] == (4, 4) and {m for *_, m in seen[1:]} == {f"{x} done" for x in labels}


def test_a_worker_that_keeps_dying_fails_the_run_with_one_line(
    ray_cluster: Any, tmp_path: Path
) -> None:
    from tripwire.errors import TripwireError
    from tripwire.scale import RayMap, Resources

    def always_dies(x: int) -> int:
        os._exit(1)

    with pytest.raises(TripwireError, match="its Ray worker died 2 times"):
        RayMap(Resources(max_retries=1))(always_dies, [1], ["doomed"])


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("127.0.0.1:1", "no Ray cluster answers there"),
        ("not an address", "is not an address"),
    ],
)
def test_an_unreachable_ray_address_is_one_line_and_exit_2(
    tiny_folders: tuple[Path, list[Path]], tmp_path: Path, value: str, needle: str
) -> None:
    base, adapters = tiny_folders
    out = tmp_path / "drift.json"
    res = runner.invoke(app, [*_drift_args(base, adapters, out), "--ray", value])
    assert res.exit_code == 2, res.output
    assert needle in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()
