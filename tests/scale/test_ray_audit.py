"""``tripwire audit`` over several models: one report folder each and an index, the same on
Ray as serially; a worker killed mid-report is retried and leaves nothing half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tripwire.cli import app

runner = CliRunner()
SECTIONS = "concepts"


@pytest.fixture(scope="module")
def two_models(make_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("fleet")
    folders = []
    for k, name in enumerate(["alpha", "beta"]):
        lm = make_lm("llama", seed=k)
        lm.model.save_pretrained(root / name)
        lm.tokenizer.save_pretrained(root / name)
        folders.append(root / name)
    return folders


def _args(models: list[Path], out: Path) -> list[str]:
    args = ["audit", "--sections", SECTIONS, "--limit", "8", "--out", str(out), "--json"]
    for m in models:
        args += ["--model", str(m)]
    return args


def _report(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "report.json").read_text())
    data.pop("created")
    for s in data["sections"]:
        s.pop("seconds")
    return data


def test_audit_of_two_models_on_ray_equals_the_serial_run(
    ray_cluster: Any, two_models: list[Path], tmp_path: Path, one_thread: None
) -> None:
    serial = runner.invoke(app, _args(two_models, tmp_path / "serial"))
    assert serial.exit_code == 0, serial.output
    on_ray = runner.invoke(app, [*_args(two_models, tmp_path / "ray"), "--ray"])
    assert on_ray.exit_code == 0, on_ray.output
    a, b = json.loads(serial.stdout), json.loads(on_ray.stdout)
    assert a.pop("ray") is None and b.pop("ray") == "local"
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert [e["folder"] for e in a["models"]] == ["alpha", "beta"]
    assert json.loads((tmp_path / "ray" / "index.json").read_text())["models"] == b["models"]
    for name in ("alpha", "beta"):
        s, r = _report(tmp_path / "serial" / name), _report(tmp_path / "ray" / name)
        assert s == r and s["sections"][0]["name"] == SECTIONS
        assert (tmp_path / "ray" / name / "report.html").is_file()
    assert _report(tmp_path / "ray" / "alpha") != _report(tmp_path / "ray" / "beta")


def _dies_mid_report(label: str, marker: Path) -> Any:
    """An audit job whose first attempt on ``label`` kills its worker once the report is
    being staged (the first progress message comes after the staging folder exists)."""

    def job(j: Any) -> Any:
        from tripwire.audit import audit_job

        def progress(message: str) -> None:
            if j.label == label and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)

        return audit_job(j, progress)

    return job


def test_a_worker_killed_mid_report_is_retried_and_leaves_no_staging(
    ray_cluster: Any, two_models: list[Path], tmp_path: Path, one_thread: None
) -> None:
    from tripwire.audit import AuditJob, audit_job
    from tripwire.models.loading import ModelRef
    from tripwire.scale import RayMap, Resources

    jobs = [AuditJob(m.name, ModelRef(str(m)), str(tmp_path / "ray" / m.name), [SECTIONS],
                     limit=8) for m in two_models]  # fmt: skip
    marker = tmp_path / "died"
    got = RayMap(Resources(max_retries=2))(_dies_mid_report("beta", marker), jobs)
    assert marker.exists(), "the worker was never killed"
    want = [audit_job(AuditJob(j.label, j.model, str(tmp_path / "serial" / j.label), j.sections,
                               limit=8)) for j in jobs]  # fmt: skip
    assert got == want
    for m in two_models:
        folder = tmp_path / "ray" / m.name
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
        assert _report(folder) == _report(tmp_path / "serial" / m.name)


def test_audit_of_several_models_rejects_bad_input_before_any_work(
    two_models: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, [*_args(two_models, out), "--adapter", str(two_models[0])])
    assert res.exit_code == 2 and "--adapter applies to one --model" in res.output
    twin = tmp_path / "x" / two_models[0].name
    res = runner.invoke(app, _args([two_models[0], twin], out))
    assert res.exit_code == 2 and "would both be reported in alpha/" in res.output
    res = runner.invoke(app, [*_args(two_models, out), "--ray", "127.0.0.1:1"])
    assert res.exit_code == 2 and "no Ray cluster answers there" in res.output
    assert not out.exists()
