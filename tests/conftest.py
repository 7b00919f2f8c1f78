"""Shared fixtures: tiny random models of several architectures, built from configs.

Nothing is downloaded. The tokenizer is a byte-level BPE trained in memory on shipped text,
with a ChatML template, so chat rendering, offsets and padding behave like a real one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tripwire.whitebox.datasets import neutral_prompts

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(neutral_prompts(), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return _train_tokenizer()


def _configs(vocab: int) -> dict[str, Any]:
    from transformers import (
        Gemma2Config,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
    )

    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return {
        "llama": LlamaConfig(**common, tie_word_embeddings=True),
        "qwen2": Qwen2Config(**common),
        "qwen3": Qwen3Config(**common, head_dim=8),
        "gemma2": Gemma2Config(**common, head_dim=8),
        "mistral": MistralConfig(**common),
        "phi3": Phi3Config(**{**common, "num_key_value_heads": 4}, pad_token_id=0),
        "gpt2": GPT2Config(
            vocab_size=vocab,
            n_embd=32,
            n_layer=4,
            n_head=4,
            n_positions=256,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "gpt_neox": GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            max_position_embeddings=256,
            bos_token_id=1,
            eos_token_id=2,
        ),
    }


ARCHS = ["llama", "qwen2", "qwen3", "mistral", "gemma2", "phi3", "gpt2", "gpt_neox"]


@pytest.fixture(scope="session")
def make_lm(tokenizer: Any) -> Callable[[str], Any]:
    """Build a tiny random :class:`LocalModel` of the named architecture (seeded)."""
    from transformers import AutoModelForCausalLM

    from tripwire.models import from_pretrained_objects

    def build(arch: str = "llama", seed: int = 0) -> Any:
        torch.manual_seed(seed)
        cfg = _configs(len(tokenizer))[arch]
        model = AutoModelForCausalLM.from_config(cfg)
        return from_pretrained_objects(model, tokenizer, spec=f"tiny-{arch}")

    return build


@pytest.fixture
def tiny(make_lm: Callable[[str], Any]) -> Any:
    return make_lm("llama")


@pytest.fixture(autouse=True)
def _isolated_home(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Give each unit test an empty model cache; integration tests (``slow``) share one."""
    if request.node.get_closest_marker("slow") is not None:
        return
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path_factory.mktemp("tripwire-home")))
