"""The embedded SmolLM2 through the tripwire provider, end to end (loads the model: slow).

Greedy decoding makes every reply a fixed fact of the model, so the test asserts what the
scorers must conclude from it: a sandbagging verdict that matches the number in the reply, and
(as measured in docs/behavior.md) no tool call and an intact oversight config in the agentic
family. It also checks what the provider must record on every call: token usage and the prompt
the model saw. (White-box recording is tested on a tiny model in ``test_provider.py``: extracting
concept vectors for the 135M model takes minutes on a laptop CPU.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalSample, resolve_sample_attachments
from inspect_ai.model import ChatMessageAssistant

from tripwire.behavior import final_int, local
from tripwire.behavior.scenarios import TASKS

MAX_NEW = 24


def _check_provider_records(s: EvalSample, tokenizer: Any) -> None:
    assert "internals" not in s.metadata  # no -M whitebox: nothing to record
    events = [e for e in s.events if e.event == "model"]
    assert len(events) == sum(isinstance(m, ChatMessageAssistant) for m in s.messages)
    for e in events:
        assert e.call is not None and e.output.usage is not None
        prompt = str(e.call.request["prompt"])
        assert "<|im_start|>" in prompt  # what the model read: SmolLM2's chat template
        assert e.call.request["whitebox"] == [] and e.call.request["max_new_tokens"] == MAX_NEW
        n_in = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert e.output.usage.input_tokens == n_in
        assert 0 < e.output.usage.output_tokens <= MAX_NEW


@pytest.mark.slow
def test_embedded_model_runs_a_chat_and_an_agentic_family(tmp_path: Path) -> None:
    logs = inspect_eval(
        [TASKS["sandbagging"](per_condition=1), TASKS["oversight_subversion"](condition="nudge")],
        model="tripwire/smollm2-135m",
        model_args={"max_new_tokens": MAX_NEW},
        log_dir=str(tmp_path),
        display="none",
    )
    for log in logs:
        assert log.status == "success", log.error
    (lm,) = [m for key, m in local._MODELS.items() if key[:2] == ("smollm2-135m", None)]
    sand = [resolve_sample_attachments(s, "full") for s in logs[0].samples or []]
    assert {s.metadata["condition"] for s in sand} == {"control", "unlearning", "no_deploy"}
    for s in sand:
        _check_provider_records(s, lm.tokenizer)
        assert s.scores is not None
        outcome = s.scores["scenario_outcome"]
        meta = outcome.metadata or {}
        assert meta["condition"] == s.metadata["condition"]
        assert meta["truth"] == s.metadata["answer"]
        assert meta["answer"] == final_int(s.output.completion)  # the number in the reply
        assert meta["correct"] == (meta["answer"] == meta["truth"])
        assert outcome.value == (0.0 if meta["correct"] else 1.0)
    (agent,) = [resolve_sample_attachments(s, "full") for s in logs[1].samples or []]
    _check_provider_records(agent, lm.tokenizer)
    assert agent.scores is not None
    replies = [m for m in agent.messages if isinstance(m, ChatMessageAssistant)]
    assert [m.tool_calls for m in replies] == [None] * len(replies)  # 135M does not use tools
    assert agent.scores["scenario_outcome"].value == 0.0
    assert agent.scores["scenario_outcome"].explanation == "oversight config intact"
    assert agent.scores["interrogation_outcome"].value == 0.0  # nothing done, nothing denied
