"""A small, resumable supervised fine-tuning loop (LoRA through PEFT, or every weight).

Plain torch: AdamW, linear warm-up then constant learning rate, loss on the answer tokens only
(the chat template's markers and the user's text are context, not targets). The batch order is a
pure function of ``(seed, step)`` and dropout is off, so a run resumed from a checkpoint takes
exactly the steps an uninterrupted one would. Checkpoints (trainable weights as safetensors, the
optimiser state, the step and the loss history) are written atomically every
``checkpoint_every`` steps.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tripwire._io import atomic_path, write_json
from tripwire.errors import UsageError
from tripwire.models.chat import render_with_response
from tripwire.organisms.data import Example
from tripwire.whitebox.capture import forward_kwargs


@dataclass
class TrainConfig:
    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 8
    warmup: int = 10
    seed: int = 0
    checkpoint_every: int = 25
    max_length: int = 192


@dataclass
class TrainLog:
    """Loss per step (mean over the batch's answer tokens)."""

    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0

    def mean(self, first: int, last: int) -> float:
        chunk = self.losses[first:last]
        return float(np.mean(chunk)) if chunk else float("nan")


@dataclass
class _Tokenized:
    ids: list[int]
    target: list[bool]  # target[t]: token t is an answer token (predicted from t - 1)


def tokenize_examples(
    tokenizer: Any, examples: Sequence[Example], max_length: int = 192
) -> list[_Tokenized]:
    """Render each example as a chat turn and mark its answer tokens."""
    out = []
    for ex in examples:
        messages = [] if ex.system is None else [{"role": "system", "content": ex.system}]
        messages += [
            {"role": "user", "content": ex.prompt},
            {"role": "assistant", "content": ex.target},
        ]
        r = render_with_response(tokenizer, messages)
        assert r.span is not None
        enc = tokenizer(r.text, add_special_tokens=False, return_offsets_mapping=True)
        start, end = r.span
        ids = list(enc["input_ids"])[:max_length]
        tgt = [bool(e > s and s < end and e > start) for s, e in enc["offset_mapping"]][:max_length]
        if not any(tgt[1:]):
            raise UsageError(
                f"no answer token survives max_length={max_length}; shorten the prompt or raise it"
            )
        out.append(_Tokenized(ids, tgt))
    return out


def _batch(rows: Sequence[_Tokenized], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    tgt = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, r in enumerate(rows):
        n = len(r.ids)
        ids[b, :n] = torch.tensor(r.ids)
        att[b, :n] = 1
        tgt[b, :n] = torch.tensor(r.target)
    return ids, att, tgt


def _keeps_logits(model: Any) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (most recent HF causal LMs do)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


def answer_loss(
    model: Any, rows: Sequence[_Tokenized], pad_id: int, only_answers: bool = True
) -> torch.Tensor:
    """Mean cross-entropy over answer tokens.

    With ``only_answers`` (and a model that supports it) the vocabulary projection is computed
    only at positions that predict an answer token: the same loss, a fraction of the cost.
    """
    ids, att, tgt = _batch(rows, pad_id)
    dev = next(model.parameters()).device
    ids, att, tgt = ids.to(dev), att.to(dev), tgt.to(dev)
    predicts = tgt[:, 1:]  # predicts[b, t]: position t predicts answer token t + 1
    gold = ids[:, 1:][predicts]
    kwargs = forward_kwargs(model, ids, att)
    if only_answers and _keeps_logits(model):
        cols = predicts.any(0).nonzero().squeeze(1)
        logits = model(**kwargs, logits_to_keep=cols).logits
        pred = logits[predicts[:, cols]]
    else:
        pred = model(**kwargs).logits[:, :-1][predicts]
    return torch.nn.functional.cross_entropy(pred.float(), gold)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Which examples step ``step`` trains on: epochs of seeded permutations, cycled."""
    bs = min(batch_size, n)
    start = step * bs
    out = []
    for pos in range(start, start + bs):
        epoch, k = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perm[k]))
    return out


def _trainable(model: Any) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup)


def _save_checkpoint(
    ckpt: Path, model: Any, opt: torch.optim.Optimizer, log: TrainLog, step: int, key: str
) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    weights = {n: p.detach().cpu().contiguous().clone() for n, p in _trainable(model).items()}
    with atomic_path(ckpt / "weights.safetensors") as tmp:
        save_file(weights, str(tmp))
    with atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save(opt.state_dict(), tmp)
    # The step file is written last: it names a complete checkpoint.
    write_json(ckpt / "state.json", {"step": step, "losses": log.losses, "key": key})


def _load_checkpoint(
    ckpt: Path, model: Any, opt: torch.optim.Optimizer, key: str
) -> tuple[int, list[float]] | None:
    state_file = ckpt / "state.json"
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("key") != key:
        raise UsageError(
            f"{ckpt} holds a checkpoint of a different run; delete it or repeat that run's options"
        )
    params = _trainable(model)
    saved = load_file(str(ckpt / "weights.safetensors"))
    if set(saved) != set(params):
        raise UsageError(f"{ckpt} does not match this model's trainable weights; delete it")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n].to(p.device, p.dtype))
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    return int(state["step"]), [float(x) for x in state["losses"]]


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    cfg: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    run_key: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainLog:
    """Fine-tune the trainable parameters of ``model`` on ``examples`` for ``cfg.steps`` steps.

    Resumes from ``checkpoint_dir`` when it holds a checkpoint with the same ``run_key``.
    """
    if cfg.steps < 1:
        raise UsageError("--steps must be at least 1")
    if not examples:
        raise UsageError("no training examples")
    rows = tokenize_examples(tokenizer, examples, cfg.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    params = list(_trainable(model).values())
    if not params:
        raise UsageError("the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    log = TrainLog()
    step = 0
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt is not None:
        loaded = _load_checkpoint(ckpt, model, opt, run_key)
        if loaded is not None:
            step, log.losses = loaded
            log.resumed_from = step
    model.eval()  # dropout off: deterministic steps, exact resumption (and left off after)
    torch.manual_seed(cfg.seed)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        idx = batch_indices(len(rows), cfg.batch_size, cfg.seed, step)
        loss = answer_loss(model, [rows[i] for i in idx], pad_id)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        log.losses.append(value)
        if progress is not None:
            progress(step, cfg.steps, value)
        if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            _save_checkpoint(ckpt, model, opt, log, step, run_key)
    return log


__all__ = ["TrainConfig", "TrainLog", "answer_loss", "batch_indices", "tokenize_examples", "train"]
