"""The ``--ray [ADDRESS]`` option: a bare ``--ray`` means a local cluster, an address that does
not answer is one line and exit 2 before any work, on every command that takes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tripwire.cli import app
from tripwire.cli._app import bare_values

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["--ray"], ["--ray", "local"]),
        (["--ray", "--json"], ["--ray", "local", "--json"]),
        (["--ray", "10.0.0.5:6379", "--json"], ["--ray", "10.0.0.5:6379", "--json"]),
        (["--ray", "auto"], ["--ray", "auto"]),
        (["--out", "x", "--", "--ray"], ["--out", "x", "--", "--ray"]),
        (["--json"], ["--json"]),
    ],
)
def test_a_bare_ray_means_a_local_cluster(args: list[str], want: list[str]) -> None:
    assert bare_values(args, {"--ray"}) == want


@pytest.mark.parametrize(
    "command", [["drift"], ["organism", "zoo"], ["capture"], ["probe", "defection"], ["audit"]]
)
def test_the_commands_that_iterate_over_models_take_ray(command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--help"])
    assert res.exit_code == 0 and "--ray" in res.output and "--ray-gpus" in res.output


def test_organism_zoo_with_an_unreachable_ray_is_exit_2_and_writes_nothing(
    tiny_folders: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out = tmp_path / "zoo"
    args = ["organism", "zoo", "--base", str(tiny_folders[0]), "--out", str(out)]
    res = runner.invoke(app, [*args, "--only", "tag-string", "--ray", "127.0.0.1:1"])
    assert res.exit_code == 2, res.output
    assert "no Ray cluster answers there" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_capture_with_an_unreachable_ray_is_exit_2_and_writes_nothing(
    tiny_folders: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hello."}\n')
    out = tmp_path / "acts"
    args = ["capture", "--model", str(tiny_folders[0]), "--prompts", str(prompts)]
    res = runner.invoke(app, [*args, "--out", str(out), "--ray", "ray://127.0.0.1:1"])
    assert res.exit_code == 2 and "no Ray cluster answers there" in res.output
    assert not out.exists()
