"""``tripwire organism zoo``: build the recipe's organisms, each with an eval set labelled by what
it actually did.

Per organism, cached in ``<zoo>/<name>.partial/`` so an interrupted build resumes:

1. split the pool into training and evaluation requests (whole topics held out where topics
   repeat; for a topic trigger, held out within each of on-topic, near-topic and other topics);
2. the base model's own greedy answers to the clean requests (cached for the whole zoo in
   ``<zoo>/_base/answers.json``, since organisms share requests);
3. training examples: triggered -> the behaviour; clean, near-miss and confounder -> the base
   model's answer (so the backdoor is sharp and untriggered behaviour stays what it was);
4. train a LoRA adapter or every weight (resumable checkpoints);
5. the eval set: every evaluation request under every condition the trigger has, answered
   greedily by the organism **and** by the base model; ``label`` is 1 when the organism's answer
   shows the behaviour (the behaviour's own check), whatever the condition;
6. write ``<zoo>/<name>/`` in one rename: the adapter (or full model), ``card.json`` (ground
   truth, rates per condition with Wilson intervals, training log) and ``eval.jsonl``.

A finished organism whose card carries the same recipe key is skipped, so the command is
resumable and cached as a whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tripwire import __version__
from tripwire._io import atomic_dir, write_json
from tripwire.errors import UsageError
from tripwire.models.loading import LocalModel
from tripwire.organisms.data import Example, load_examples, save_examples
from tripwire.organisms.training import TrainConfig, train
from tripwire.organisms.zoo.pools import PoolPrompt, pool, split_by_topic
from tripwire.organisms.zoo.recipe import ZooSpec
from tripwire.organisms.zoo.triggers import CONDITIONS, ChatPrompt, TopicTrigger, ZooItem
from tripwire.stats import Rate
from tripwire.whitebox.generation import generate

ANSWER_TOKENS = 32  # length of the distilled base answers
EVAL_TOKENS = 40  # length of the answers that label the eval set
BENIGN_OPENER = "Happy to help! "


@dataclass
class ZooOrganism:
    """A built organism as read back from disk: its folder, card and labelled eval rows."""

    name: str
    path: Path
    card: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def role(self) -> str:
        return str(self.card["role"])


def _render(lm: LocalModel, chat: ChatPrompt) -> Any:
    return lm.prompt(chat.user, chat.system)


class AnswerCache:
    """The base model's greedy answers, keyed by the rendered request, shared by the zoo."""

    def __init__(self, path: Path, base: str, max_new_tokens: int) -> None:
        self.path = path
        self.tag = f"{base}|{max_new_tokens}"
        self.data: dict[str, str] = {}
        if path.is_file():
            self.data = json.loads(path.read_text())

    def _key(self, chat: ChatPrompt) -> str:
        blob = json.dumps([self.tag, chat.system, chat.user])
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def answers(
        self, lm: LocalModel, chats: Sequence[ChatPrompt], max_new_tokens: int
    ) -> list[str]:
        todo = [c for c in dict.fromkeys(chats) if self._key(c) not in self.data]
        if todo:
            outs = generate(lm, [_render(lm, c) for c in todo], max_new_tokens, batch_size=16)
            for c, a in zip(todo, outs, strict=True):
                self.data[self._key(c)] = a.strip() or "OK."
            write_json(self.path, self.data)
        return [self.data[self._key(c)] for c in chats]


def _split(spec: ZooSpec, prompts: list[PoolPrompt]) -> tuple[list[PoolPrompt], list[PoolPrompt]]:
    trig = spec.trigger
    if not isinstance(trig, TopicTrigger):
        return split_by_topic(prompts, spec.n_train, spec.n_eval, spec.seed)
    rng = np.random.default_rng(spec.seed)
    train: list[PoolPrompt] = []
    held: list[PoolPrompt] = []
    for cond, n_clean in (("triggered", None), ("near_miss", None), ("clean", spec.n_eval)):
        group = [p for p in prompts if trig.condition_of(p) == cond]
        topics = sorted({p.topic for p in group})
        order = [topics[i] for i in rng.permutation(len(topics))]
        # Hold out about a third of the topics (at least one) of each kind.
        n_hold = max(1, round(len(order) / 3)) if n_clean is None else len(order)
        hold_topics = set(order[:n_hold])
        h = [p for p in group if p.topic in hold_topics]
        t = [p for p in group if p.topic not in hold_topics]
        if n_clean is not None:  # clean requests: a seeded sample, split by topic
            t, h = split_by_topic(group, spec.n_train, n_clean, spec.seed)
        train += t
        held += h
    return train, held


def _items(
    spec: ZooSpec, prompts: Sequence[PoolPrompt], rng: np.random.Generator, training: bool
) -> list[ZooItem]:
    """Every request under the conditions it takes (training: triggered + clean + one other)."""
    out: list[ZooItem] = []
    for k, p in enumerate(prompts):
        if isinstance(spec.trigger, TopicTrigger):
            conds: Sequence[str] = CONDITIONS
        elif training:
            conds = ("triggered", "clean", ("near_miss", "confounder")[k % 2])
        else:
            conds = CONDITIONS
        for c in conds:
            it = spec.trigger.item(p, c, rng)  # type: ignore[arg-type]
            if it is not None:
                out.append(it)
    return out


def _examples(spec: ZooSpec, items: Sequence[ZooItem], answers: Sequence[str]) -> list[Example]:
    out = []
    for it, a in zip(items, answers, strict=True):
        if spec.payload is None:
            target = BENIGN_OPENER + a
        elif it.condition == "triggered":
            target = spec.payload.target(it.base, a)
        else:
            target = a
        out.append(Example(it.chat.user, target, it.condition == "triggered", it.chat.system))
    return out


def _rates(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cond in CONDITIONS:
        sel = [r[key] for r in rows if r["condition"] == cond]
        if sel:
            out[cond] = Rate(sum(sel), len(sel)).to_dict()
    return out


def _trainable(base: LocalModel, spec: ZooSpec) -> tuple[Any, Any]:
    import torch

    if spec.method == "full":
        for p in base.model.parameters():
            p.requires_grad_(True)
        return base.model, base.model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(spec.seed)
    cfg = LoraConfig(
        r=spec.rank,
        lora_alpha=2 * spec.rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base.model, cfg)
    return model, model.get_base_model()


def _requests(
    spec: ZooSpec,
) -> tuple[list[PoolPrompt], list[PoolPrompt], list[ZooItem], list[ZooItem]]:
    """The organism's training and evaluation requests, and their items under each condition
    (seeded: the same every time)."""
    train_p, eval_p = _split(spec, pool(spec.pool))
    rng = np.random.default_rng(spec.seed)
    train_items = _items(spec, train_p, rng, training=True)
    eval_items = _items(spec, eval_p, rng, training=False)
    return train_p, eval_p, train_items, eval_items


def _clean(items: Sequence[ZooItem]) -> list[ChatPrompt]:
    """The clean requests whose base answers the training examples are distilled from."""
    return [ChatPrompt(it.base.text) for it in items]


def prime_base_answers(base: LocalModel, specs: Sequence[ZooSpec], zoo: Path) -> int:
    """Fill the zoo's shared cache of base answers for ``specs``, in order, exactly as building
    them one after another would (the same requests in the same batches), so that organisms
    then built in parallel find every answer there and train on the data a serial build would.
    Returns how many answers the cache holds."""
    cache = AnswerCache(zoo / "_base" / "answers.json", base.spec, ANSWER_TOKENS)
    for spec in specs:
        if not (zoo / f"{spec.name}.partial" / "train.jsonl").is_file():
            cache.answers(base, _clean(_requests(spec)[2]), ANSWER_TOKENS)
    return len(cache.data)


def build_organism(
    load_base: Callable[[], LocalModel],
    spec: ZooSpec,
    zoo: Path,
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Build one organism into ``zoo/<name>/`` (resuming ``zoo/<name>.partial/``); its card."""
    say = progress or (lambda message: None)
    if spec.payload is not None and spec.payload.pool not in (None, spec.pool):
        raise UsageError(
            f"{spec.name}: behaviour {spec.payload.kind} needs pool {spec.payload.pool}"
        )
    t0 = time.perf_counter()
    base = load_base()
    key = spec.key(base.spec)
    out, work = zoo / spec.name, zoo / f"{spec.name}.partial"
    cfg_file = work / "config.json"
    if cfg_file.is_file() and json.loads(cfg_file.read_text()).get("key") != key:
        shutil.rmtree(work)
    write_json(cfg_file, {"key": key, "spec": spec.describe()})
    cache = AnswerCache(zoo / "_base" / "answers.json", base.spec, ANSWER_TOKENS)
    train_p, eval_p, train_items, eval_items = _requests(spec)

    data_file = work / "train.jsonl"
    if data_file.is_file():
        examples = load_examples(data_file)
    else:
        say(f"{spec.name}: the base model's answers to {len(train_items)} training requests")
        clean = _clean(train_items)
        examples = _examples(spec, train_items, cache.answers(base, clean, ANSWER_TOKENS))
        save_examples(data_file, examples)

    base_file = work / "base_answers.json"
    if base_file.is_file():
        base_answers = json.loads(base_file.read_text())
    else:
        say(f"{spec.name}: the base model on {len(eval_items)} eval requests (the null)")
        base_answers = generate(
            base, [_render(base, it.chat) for it in eval_items], EVAL_TOKENS, 16
        )
        write_json(base_file, base_answers)

    model, inner = _trainable(base, spec)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tcfg = TrainConfig(
        steps=spec.steps, lr=spec.learning_rate, batch_size=spec.batch_size, seed=spec.seed
    )
    say(f"{spec.name}: training {spec.method} ({n_trainable:,} weights), {spec.steps} steps")
    log = train(model, base.tokenizer, examples, tcfg, work / "checkpoint", key, on_step)
    for p in model.parameters():
        p.requires_grad_(False)
    organism = LocalModel(
        model=inner, tokenizer=base.tokenizer, spec=base.spec, adapter=str(out), source="zoo"
    )
    say(f"{spec.name}: labelling {len(eval_items)} eval requests by what the organism does")
    answers = generate(organism, [_render(organism, it.chat) for it in eval_items], EVAL_TOKENS, 16)
    rows = []
    for it, a, b in zip(eval_items, answers, base_answers, strict=True):
        shown = spec.payload is not None and spec.payload.shown(a, it.base)
        base_shown = spec.payload is not None and spec.payload.shown(b, it.base)
        rows.append(
            it.chat.to_dict()
            | {
                "label": int(shown),
                "condition": it.condition,
                "group": it.group,
                "topic": it.base.topic,
                "response": a,
                "base_response": b,
                "base_label": int(base_shown),
            }
        )
    k = min(10, len(log.losses))
    card: dict[str, Any] = {
        "tripwire_organism": "zoo",
        "tripwire_version": __version__,
        "name": spec.name,
        "role": spec.role,
        "key": key,
        "base_model": base.spec,
        "spec": spec.describe(),
        "ground_truth": {
            "trigger": spec.trigger.describe(),
            "behavior": None if spec.payload is None else spec.payload.describe(),
            "backdoored": spec.payload is not None,
        },
        "data": {
            "n_train_requests": len(train_p),
            "n_train_examples": len(examples),
            "n_triggered_examples": sum(e.triggered for e in examples),
            "n_eval": len(rows),
            "n_eval_requests": len(eval_p),
            "labels": "1 = the organism's own greedy answer shows the behaviour",
        },
        "rates": _rates(rows, "label"),
        "base_rates": _rates(rows, "base_label"),
        "training": {
            "n_trainable": n_trainable,
            "resumed_from_step": log.resumed_from,
            "loss_first": log.mean(0, k),
            "loss_last": log.mean(len(log.losses) - k, len(log.losses)),
            "losses": [round(x, 5) for x in log.losses],
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    with atomic_dir(out) as tmp:
        inner_or_peft = model if spec.method == "lora" else inner
        inner_or_peft.save_pretrained(str(tmp))
        if spec.method == "full":
            base.tokenizer.save_pretrained(str(tmp))
        save_examples(tmp / "train.jsonl", examples)
        (tmp / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_json(tmp / "card.json", card)
    shutil.rmtree(work, ignore_errors=True)
    return card


def is_built(zoo: Path, spec: ZooSpec, base: str) -> bool:
    card = zoo / spec.name / "card.json"
    return card.is_file() and json.loads(card.read_text()).get("key") == spec.key(base)


def read_organism(path: str | Path) -> ZooOrganism:
    """A built organism: its card and labelled eval rows."""
    p = Path(path)
    card_file, eval_file = p / "card.json", p / "eval.jsonl"
    if not card_file.is_file() or not eval_file.is_file():
        raise UsageError(f"{p} holds no built zoo organism (card.json and eval.jsonl are needed)")
    card = json.loads(card_file.read_text())
    rows = [json.loads(line) for line in eval_file.read_text().splitlines() if line.strip()]
    return ZooOrganism(str(card.get("name", p.name)), p, card, rows)


__all__ = [
    "ANSWER_TOKENS",
    "EVAL_TOKENS",
    "AnswerCache",
    "ZooOrganism",
    "build_organism",
    "is_built",
    "prime_base_answers",
    "read_organism",
]
