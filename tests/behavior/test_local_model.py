"""The embedded SmolLM2 through the tripwire provider, end to end (loads the model: slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval

from tripwire.behavior.scenarios import oversight_subversion, sandbagging


@pytest.mark.slow
def test_embedded_model_runs_a_chat_and_an_agentic_family(tmp_path: Path) -> None:
    logs = inspect_eval(
        [sandbagging(per_condition=1), oversight_subversion(condition="nudge")],
        model="tripwire/smollm2-135m",
        model_args={"max_new_tokens": 24},
        log_dir=str(tmp_path),
        display="none",
    )
    for log in logs:
        assert log.status == "success", log.error
        for s in log.samples or []:
            assert s.scores is not None
            assert s.scores["scenario_outcome"].value in (0.0, 1.0)
            assert s.output.completion.strip()  # the model really generated text
    sand = logs[0].samples or []
    assert {s.metadata["condition"] for s in sand} == {"control", "unlearning", "no_deploy"}
