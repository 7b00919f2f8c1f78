"""Ray Data capture: actors that hold the model write one safetensors shard per batch; the
shards, in the index's order, are the serial capture of the same prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tripwire.whitebox.datasets import neutral_prompts

PROMPTS = neutral_prompts()[:22]


@pytest.mark.parametrize("positions", ["last", "response"])
def test_shards_concatenated_equal_the_serial_capture(
    ray_cluster: Any,
    tiny_folders: tuple[Path, list[Path]],
    tmp_path: Path,
    one_thread: None,
    positions: str,
) -> None:
    from tripwire.models.loading import load_model
    from tripwire.scale.data_capture import capture_on_ray
    from tripwire.whitebox.capture import Activations, capture

    base, adapters = tiny_folders
    out = tmp_path / "acts"
    index = capture_on_ray(
        str(base), PROMPTS, out, layers=[1, 3], positions=positions, adapter=str(adapters[0]),
        shard_size=6, forward_batch=4, concurrency=2,
    )  # fmt: skip
    assert index["shards"] == [f"shard-{i:09d}.safetensors" for i in (0, 6, 12, 18)]
    assert index["shard_rows"] == [6, 6, 6, 4]
    assert sorted(p.name for p in out.iterdir()) == sorted([*index["shards"], "index.json"])
    lm = load_model(str(base), adapter=adapters[0])
    want = capture(lm, [lm.prompt(p) for p in PROMPTS], layers=[1, 3], positions=positions,
                   batch_size=4)  # fmt: skip
    got = Activations.open(out)
    assert got.layers == want.layers == [1, 3] and got.n_samples == len(PROMPTS)
    for layer in (1, 3):
        np.testing.assert_allclose(got[layer], want[layer], rtol=1e-5, atol=1e-6)
    if positions == "response":
        np.testing.assert_array_equal(got.sample_index, want.sample_index)
    assert json.loads((out / "index.json").read_text())["engine"] == "ray.data map_batches"


def test_a_capture_into_a_folder_with_files_is_refused(
    ray_cluster: Any, tiny_folders: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    from tripwire.errors import UsageError
    from tripwire.scale.data_capture import capture_on_ray

    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(UsageError, match="not an empty folder"):
        capture_on_ray(str(tiny_folders[0]), PROMPTS, tmp_path)


def test_cli_capture_on_ray_equals_the_serial_command(
    ray_cluster: Any, tiny_folders: tuple[Path, list[Path]], tmp_path: Path, one_thread: None
) -> None:
    from typer.testing import CliRunner

    from tripwire.cli import app
    from tripwire.whitebox.capture import Activations

    base, _ = tiny_folders
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:10]))
    common = ["capture", "--model", str(base), "--prompts", str(prompts), "--layers", "0,2"]
    common += ["--shard-size", "4", "--positions", "mean"]
    runner = CliRunner()
    serial = runner.invoke(app, [*common, "--out", str(tmp_path / "serial")])
    assert serial.exit_code == 0, serial.output
    on_ray = runner.invoke(
        app, [*common, "--out", str(tmp_path / "ray"), "--ray", "--concurrency", "2", "--json"]
    )
    assert on_ray.exit_code == 0, on_ray.output
    index = json.loads(on_ray.stdout)  # nothing but the JSON on stdout
    assert index["n_samples"] == 10 and len(index["shards"]) == 3
    a, b = Activations.open(tmp_path / "serial"), Activations.open(tmp_path / "ray")
    for layer in (0, 2):
        np.testing.assert_allclose(a[layer], b[layer], rtol=1e-5, atol=1e-6)
    again = runner.invoke(app, [*common, "--out", str(tmp_path / "ray"), "--ray"])
    assert again.exit_code == 2 and "not an empty folder" in again.output


def test_an_actor_that_cannot_start_fails_the_capture_with_its_own_error(
    ray_cluster: Any, tiny_folders: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    from tripwire.errors import UsageError
    from tripwire.scale.data_capture import capture_on_ray

    with pytest.raises(UsageError, match="layer 99 is out of range"):
        capture_on_ray(str(tiny_folders[0]), PROMPTS, tmp_path / "acts", layers=[99])
    assert not (tmp_path / "acts" / "index.json").exists()
