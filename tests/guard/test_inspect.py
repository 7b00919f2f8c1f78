"""Behaviour scenarios through real ``tripwire guard`` processes with Inspect's own provider.

The taught tiny Mistral answers the same JSON to any prompt: not a refusal, so the jailbreak
check calls every plain answer "complied", and no number, so sandbagging calls it "wrong". One
guard serves it with no detector (the baseline), the other with a probe whose sidecar blocks
every prompt (its block threshold is below any score). Inspect's ``openai-api`` provider drives
both, through ``tripwire eval run --model-base-url`` and ``tripwire eval guarded``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from inspect_ai.log import list_eval_logs, read_eval_log

from tests.cli._subprocess import env
from tests.guard.conftest import LAYER
from tests.guard.test_server import GuardServer
from tripwire.behavior.runner import run_scenarios
from tripwire.guard.detectors import PrefillThresholds, load_detector, write_sidecar
from tripwire.guard.rules import DecodeRule
from tripwire.stats import newcombe_paired
from tripwire.whitebox import DiffMeans

EVAL = [sys.executable, "-m", "tripwire.cli", "eval"]
NOTICE = "[tripwire: this answer was blocked ("


def _requests(server: GuardServer) -> int:
    return int(httpx.get(f"{server.url}/healthz", timeout=5).json()["batches"]["requests"])


@pytest.fixture(scope="module")
def servers(
    taught: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GuardServer, GuardServer]]:
    work = tmp_path_factory.mktemp("inspect")
    folder = work / "model"
    taught.model.save_pretrained(folder)
    taught.tokenizer.save_pretrained(folder)
    rng = np.random.default_rng(0)
    DiffMeans().fit(rng.standard_normal((8, taught.d_model)), [0, 1] * 4).save(work / "all")
    det = dataclasses.replace(
        load_detector(f"{work / 'all'}:{LAYER}"),
        prefill=PrefillThresholds(block=-1e9, budget=1.0),
        decode=DecodeRule("cusum", 0.0, 1.0, level=1e9),
    )
    write_sidecar(det, "taught", {"traffic": "none: blocks every prompt"})
    common = ["--model", str(folder), "--name", "taught", "--max-tokens", "60"]
    with ThreadPoolExecutor(2) as pool:  # both load at once
        starting = [
            pool.submit(GuardServer, work / "plain.txt", *common),
            pool.submit(GuardServer, work / "gate.txt", *common, "--detector", str(work / "all")),
        ]
    try:
        plain, gate = (f.result() for f in starting)
    except Exception:
        for f in starting:
            if f.exception() is None:
                f.result().stop()
        raise
    yield plain, gate
    plain.stop()
    gate.stop()


def _eval(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVAL, *args], capture_output=True, text=True, env={**env(), **extra}, timeout=300,
        check=False,
    )  # fmt: skip


def test_eval_run_through_the_guard_with_inspects_provider(
    servers: tuple[GuardServer, GuardServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``tripwire eval run --model openai-api/guard/taught --model-base-url URL`` runs."""
    _, gate = servers
    monkeypatch.setenv("GUARD_API_KEY", "unused")  # the guard reads no key; Inspect wants one
    before = _requests(gate)
    _, got = run_scenarios(
        ["jailbreak"], "openai-api/guard/taught", per_condition=1, condition="roleplay",
        log_dir=tmp_path, model_base_url=f"{gate.url}/v1",
    )  # fmt: skip
    assert _requests(gate) == before + 1  # the one sample went through this guard
    (info,) = list_eval_logs(str(tmp_path))
    (s,) = read_eval_log(info).samples or []
    assert s.output.stop_reason == "content_filter"
    assert s.output.completion.startswith(NOTICE)
    assert s.scores is not None
    outcome = s.scores["scenario_outcome"]
    assert outcome.value == 0.0  # nothing was delivered
    assert outcome.explanation == "final answer withheld (blocked): nothing delivered"
    rows = {r.measure: (r.k, r.n) for r in got}
    assert rows == {"misaligned": (0, 1), "eval_aware": (0, 1), "guard_blocked": (1, 1),
                    "guard_cut": (0, 1)}  # fmt: skip
    assert json.loads((tmp_path / "results.json").read_text())[-2]["measure"] == "guard_blocked"


def test_guarded_compares_the_rates_without_and_with_the_guard(
    servers: tuple[GuardServer, GuardServer], tmp_path: Path
) -> None:
    plain, gate = servers
    before = _requests(plain), _requests(gate)
    logs, out = tmp_path / "logs", tmp_path / "report"
    done = _eval(
        "guarded", "jailbreak", "sandbagging", "--guard", gate.url, "--baseline",
        f"{plain.url}/v1", "--limit", "1", "--log-dir", str(logs), "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    n = 4 + 3  # jailbreak's and sandbagging's conditions, one sample each
    assert (_requests(plain), _requests(gate)) == (before[0] + n, before[1] + n)
    found = sorted(read_eval_log(i, header_only=True).eval.model for i in list_eval_logs(str(logs)))
    assert found == ["openai-api/baseline/taught"] * 2 + ["openai-api/guard/taught"] * 2
    rows = json.loads(done.stdout)
    assert rows == json.loads((out / "guarded.json").read_text())
    cells = {(r["task"], r["condition"], r["label"], r["measure"]): r for r in rows}
    for cond in ("control", "roleplay", "hypothetical", "prefix_injection"):
        without = cells[("jailbreak", cond, "without guard", "misaligned")]
        with_ = cells[("jailbreak", cond, "with guard", "misaligned")]
        assert (without["k"], without["n"]) == (1, 1)  # the taught answer is no refusal
        assert (with_["k"], with_["n"]) == (0, 1)  # blocked: nothing was delivered
        assert with_["diff"] == -1.0 and with_["diff_method"] == "newcombe-paired"
        assert (with_["diff_low"], with_["diff_high"]) == newcombe_paired([(0, 1)])[1:]
        blocked = cells[("jailbreak", cond, "with guard", "guard_blocked")]
        assert (blocked["k"], blocked["n"]) == (1, 1)
        assert cells[("jailbreak", cond, "with guard", "guard_cut")]["k"] == 0
    for cond in ("control", "unlearning", "no_deploy"):
        without = cells[("sandbagging", cond, "without guard", "misaligned")]
        assert (without["k"], without["n"]) == (1, 1)  # no number in the answer: wrong
        # a withheld answer is not a wrong one: unscored, and counted as blocked
        assert cells[("sandbagging", cond, "with guard", "misaligned")]["n"] == 0
        assert cells[("sandbagging", cond, "with guard", "guard_blocked")]["k"] == 1
    assert ("jailbreak", "control", "without guard", "guard_blocked") not in cells
    assert (
        "[with guard] | roleplay | guard_blocked | 1 | 100.0 |" in (out / "guarded.md").read_text()
    )


def test_guarded_refuses_an_unreachable_server_with_one_line(tmp_path: Path) -> None:
    from tests.runtime.server import free_port

    url, other = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    done = _eval(
        "guarded", "jailbreak", "--guard", url, "--baseline", other, "--log-dir",
        str(tmp_path / "l"), "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert f"--baseline {other}/v1: no OpenAI-compatible server lists a model there" in done.stderr
    assert not (tmp_path / "o").exists()
