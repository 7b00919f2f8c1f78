"""The ``tripwire/<local model>`` provider on a plain Inspect task (not one of tripwire's).

A tiny random Llama (from ``tests/conftest.py``, context 256 tokens) stands in for a real model,
so the real provider code runs: model args in every shape Inspect passes them, white-box scores
recorded in the sample's metadata, token usage and the ``ModelCall`` in the log, and a prompt
that overflows the context refused before generating.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog, resolve_sample_attachments
from inspect_ai.model import ChatMessageAssistant
from inspect_ai.solver import generate, user_message

import tripwire
from tripwire.behavior import local
from tripwire.behavior.local import ContextLengthError, LocalChat, Steering, spec_list
from tripwire.behavior.provider import ModelArgError, TripwireModelAPI
from tripwire.errors import UsageError
from tripwire.models import tripwire_home

CONCEPTS = ("calm", "fear")


REPLY = "Hello there, friend"


@pytest.fixture
def tiny_provider(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``tripwire/tiny-llama`` resolves to the tiny model, with saved vectors for CONCEPTS.

    A random model only emits newlines, which carry no scores; its ``generate`` is made to
    continue with the tokens of REPLY (everything around it is the real code)."""
    import torch

    from tripwire.whitebox import ConceptVector

    reply = tiny.tokenizer(REPLY, add_special_tokens=False)["input_ids"]

    def continue_with_reply(input_ids: Any, max_new_tokens: int, **kwargs: Any) -> Any:
        new = torch.tensor([reply[:max_new_tokens]] * input_ids.shape[0])
        return torch.cat([input_ids, new], dim=1)

    monkeypatch.setattr(tiny.model, "generate", continue_with_reply)
    monkeypatch.setitem(local._MODELS, ("tiny-llama", None, "float32", "cpu"), tiny)
    rng = np.random.default_rng(0)
    for name in CONCEPTS:
        dirs = {k: v / np.linalg.norm(v) for k, v in enumerate(rng.normal(size=(4, 32)))}
        vec = ConceptVector(name, layer=2, directions=dirs, readout_w=rng.normal(size=32))
        base = tripwire_home() / "behavior" / "concepts" / "tiny-llama" / name
        base.parent.mkdir(parents=True, exist_ok=True)
        vec.save(base)
    return tiny


def _plain_task(text: str = "Say hello.") -> Task:
    """Two turns of a task that has nothing of tripwire in it."""
    return Task(
        dataset=[Sample(input=text)],
        solver=[generate(), user_message("And once more."), generate()],
    )


def _run(task: Task, tmp_path: Path, **model_args: Any) -> EvalLog:
    (log,) = inspect_eval(
        task,
        model="tripwire/tiny-llama",
        model_args={"max_new_tokens": 4, **model_args},
        log_dir=str(tmp_path),
        display="none",
    )
    return log


@pytest.mark.parametrize(
    "value", [["calm", "fear"], ("calm", "fear"), "calm,fear", "calm; fear", " calm ,fear,"]
)
def test_list_valued_model_args_take_every_shape(value: Any) -> None:
    assert spec_list("whitebox", value) == ["calm", "fear"]


def test_steer_and_detector_specs_take_lists_too() -> None:
    want = [Steering("calm", 12, -4.0), Steering("fear", None, 2.0)]
    assert Steering.parse(["calm:12:-4", "fear:2"]) == want
    assert Steering.parse("calm:12:-4,fear:2") == want  # tripwire eval run -M steer=a,b


@pytest.mark.parametrize(
    "args,needle",
    [
        ({"whitebox": 3}, "whitebox=3"),
        ({"whitebox": {"calm": 1}}, "comma-separated string or a list"),
        ({"whitebox": ["calm", None]}, "comma-separated string or a list"),
        ({"whitebox": "calm,nope"}, "unknown concept(s) nope"),
        ({"steer": ["desperation:x"]}, "bad steer spec"),
        ({"max_new_tokens": "many"}, "max_new_tokens='many'"),
        ({"max_new_tokens": 0}, "give a positive integer"),
        ({"temperature": 1}, "unknown model args ['temperature']"),
    ],
)
def test_bad_model_args_are_one_line_errors_before_loading(
    args: dict[str, Any], needle: str
) -> None:
    # the model does not exist: an error about the args proves they are checked first
    with pytest.raises(ModelArgError) as info:
        TripwireModelAPI("no-such-model", **args)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_inspect_cli_prints_the_one_line_error(tmp_path: Path) -> None:
    """The documented ``-M whitebox=a,b`` form, through Inspect's own CLI (a list arrives)."""
    inspect = Path(sys.executable).with_name("inspect")
    src = str(Path(tripwire.__file__).parents[1])  # this checkout, whatever the cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [
            str(inspect),
            "eval",
            "tripwire/sandbagging",
            "--model",
            "tripwire/no-such-model",
            "-M",
            "whitebox=desperation,nope",
            "--log-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode != 0
    assert "unknown concept(s) nope in -M steer/whitebox" in text
    assert "Traceback" not in text and "['desperation'" not in text


def test_a_plain_task_records_internals_usage_and_the_model_call(
    tiny_provider: Any, tmp_path: Path
) -> None:
    log = _run(_plain_task(), tmp_path, whitebox=["calm", "fear"])  # as `-M whitebox=calm,fear`
    assert log.status == "success", log.error
    (s,) = [resolve_sample_attachments(x, "full") for x in log.samples or []]
    replies = [(i, m) for i, m in enumerate(s.messages) if isinstance(m, ChatMessageAssistant)]
    assert [i for i, _ in replies] == [1, 3]  # user, assistant, user, assistant
    rows = s.metadata["internals"]
    assert [r["message"] for r in rows] == [1, 3]
    for row, (_, msg) in zip(rows, replies, strict=True):
        assert set(row["whitebox"]) == set(CONCEPTS)
        assert row["whitebox"] == (msg.metadata or {})["tripwire"]["whitebox"]
    calls = [e for e in s.events if e.event == "model"]
    assert len(calls) == 2
    tok = tiny_provider.tokenizer
    for event in calls:
        assert event.call is not None
        request, response = event.call.request, event.call.response or {}
        assert "Say hello." in str(request["prompt"]) and request["whitebox"] == list(CONCEPTS)
        assert request["messages"][0] == {"role": "user", "content": "Say hello."}
        usage = event.output.usage
        assert usage is not None
        assert usage.input_tokens == len(tok(request["prompt"], add_special_tokens=False).input_ids)
        assert usage.output_tokens == 4  # max_new_tokens of REPLY's tokens
        assert REPLY.startswith(event.output.completion) and event.output.completion
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        assert response["text"] == event.output.completion
    assert calls[1].output.usage.input_tokens > calls[0].output.usage.input_tokens
    assert log.stats.model_usage["tripwire/tiny-llama"].output_tokens > 0


def test_without_whitebox_nothing_is_added_to_the_sample(
    tiny_provider: Any, tmp_path: Path
) -> None:
    log = _run(_plain_task(), tmp_path)
    assert log.status == "success", log.error
    (s,) = log.samples or []
    assert "internals" not in s.metadata
    assert all(e.call is not None for e in s.events if e.event == "model")


def test_a_prompt_over_the_context_is_refused_before_generating(
    tiny_provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generated although the prompt does not fit")

    monkeypatch.setattr(tiny_provider.model, "generate", never)
    chat = LocalChat(lm=tiny_provider)
    prompt = tiny_provider.chat([{"role": "user", "content": "word " * 300}])
    with pytest.raises(ContextLengthError, match="context of 256 tokens"):
        chat._fit(prompt, 4)
    short = tiny_provider.chat([{"role": "user", "content": "hi"}])
    n = chat._fit(short, 4)
    assert chat._fit(short, 256 - n) == n
    with pytest.raises(ContextLengthError, match=f"the prompt is {n} tokens"):
        chat._fit(short, 257 - n)  # the reply's room counts too
    log = _run(_plain_task("word " * 300), tmp_path)
    assert log.status == "error" and log.error is not None
    assert "over tiny-llama's context of 256 tokens" in log.error.message
