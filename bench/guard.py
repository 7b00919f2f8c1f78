"""What the guard's detectors cost: generation with every detector on vs plain ``generate``.

Same model, same prompts, greedy, batch 1 and batch 8, measured in one run and alternated
(best of ``--rounds`` each, so a noisy neighbour hurts both sides alike):

* ``plain``: transformers' own ``model.generate`` (KV cache, greedy), the baseline;
* ``guard_off``: the guard's engine with no detector (its own decode loop, no hooks);
* ``guard_on``: the guard with every kind of detector at once: a linear probe at each of three
  layers (a quarter, half and three quarters of the depth; one matrix product on the device per
  token), and a Mahalanobis outlier detector at the middle layer (scored on the CPU).

The in-process guard's memory is measured beside it: the peak resident set size of a fresh
process that loads the model and answers one batch of each size, plain ``generate`` vs the
guard with every detector on (``ru_maxrss``; the ratio is the guard's footprint at the edge).

Time per generated token is compared (answers may stop at the end-of-sequence token at
different lengths; ``min_new_tokens`` keeps ``generate`` from stopping early, the guard stops
where the model does). Prints ``ratios`` (``guard_on / plain`` and ``guard_off / plain`` per
batch size); the target for ``guard_on / plain`` is <= 1.02. ``--json`` prints the result.

    python bench/guard.py                          # the embedded SmolLM2-135M on CPU
    python bench/guard.py --device cuda --tokens 64 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripwire.guard import Guard, load_detector
from tripwire.guard.engine import Event, Finish
from tripwire.models import load_model
from tripwire.whitebox import DiffMeans, MahalanobisDetector
from tripwire.whitebox.datasets import neutral_prompts

TARGET = 1.02


def _detectors(lm: Any, folder: Path) -> list[Any]:
    """Three linear probes and one outlier detector, fitted on random residual-sized data (the
    cost of scoring does not depend on what was fitted)."""
    rng = np.random.default_rng(0)
    n = lm.n_layers
    specs = []
    for k, layer in enumerate(sorted({n // 4, n // 2, (3 * n) // 4})):
        DiffMeans().fit(rng.standard_normal((16, lm.d_model)), [0, 1] * 8).save(folder / f"p{k}")
        specs.append(f"{folder / f'p{k}'}:{layer}")
    MahalanobisDetector().fit(rng.standard_normal((4 * lm.d_model, lm.d_model))).save(
        folder / "maha"
    )
    specs.append(f"{folder / 'maha'}:{n // 2}")
    return [load_detector(s) for s in specs]


def _plain(lm: Any, texts: list[str], tokens: int) -> tuple[float, int]:
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    start = time.perf_counter()
    with torch.inference_mode():
        out = lm.model.generate(
            **enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
            pad_token_id=tok.pad_token_id,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, int(out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1]))


def _guarded(guard: Guard, prompts: list[str], tokens: int) -> tuple[float, int]:
    preps = [guard.prepare({"messages": [{"role": "user", "content": p}], "max_tokens": tokens,
                            "temperature": 0}) for p in prompts]  # fmt: skip
    n = [0]

    def sink(_i: int, ev: Event) -> None:
        if isinstance(ev, Finish):
            n[0] += ev.n_tokens

    start = time.perf_counter()
    guard.run(preps, sink)
    return time.perf_counter() - start, n[0]


def _child(args: argparse.Namespace) -> None:
    """One fresh process: load, answer a batch of each size, print the peak RSS in MiB."""
    lm = load_model(args.model, device=args.device)
    guard = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.memory_child == "guard_on":
            guard = Guard(lm, _detectors(lm, Path(tmp)))
    prompts = neutral_prompts()
    for batch in [int(b) for b in args.batches.split(",")]:
        if guard is None:
            _plain(lm, [lm.prompt(p).text for p in prompts[:batch]], args.tokens)
        else:
            _guarded(guard, prompts[:batch], args.tokens)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def _peak_mb(args: argparse.Namespace, which: str) -> float:
    cmd = [sys.executable, __file__, "--memory-child", which, "--model", args.model]
    cmd += ["--device", args.device, "--tokens", str(args.tokens), "--batches", args.batches]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return round(float(out.strip().splitlines()[-1]), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--memory-child", choices=["plain", "guard_on"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        _child(args)
        return
    memory = {which: _peak_mb(args, which) for which in ("plain", "guard_on")}
    memory["ratio"] = round(memory["guard_on"] / memory["plain"], 3)
    lm = load_model(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        dets = _detectors(lm, Path(tmp))
    on, off = Guard(lm, dets), Guard(lm, [])
    prompts = neutral_prompts()
    results: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        chosen = prompts[:batch]
        texts = [lm.prompt(p).text for p in chosen]
        _plain(lm, texts, 2), _guarded(on, chosen, 2)  # warm up both paths
        best: dict[str, float] = {}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):
            for name in ("plain", "guard_off", "guard_on"):
                if name == "plain":
                    seconds, n = _plain(lm, texts, args.tokens)
                else:
                    seconds, n = _guarded(on if name == "guard_on" else off, chosen, args.tokens)
                per = seconds / max(n, 1)
                best[name] = min(best.get(name, np.inf), per)
                counts[name] = n
        results[f"batch{batch}"] = {
            k: {"ms_per_token": round(v * 1000, 3), "tokens": counts[k]} for k, v in best.items()
        }
        ratios[f"guard_on_batch{batch}"] = round(best["guard_on"] / best["plain"], 3)
        ratios[f"guard_off_batch{batch}"] = round(best["guard_off"] / best["plain"], 3)
    out = {
        "model": args.model,
        "device": args.device,
        "detectors": [d.name for d in dets],
        "layers": sorted({i for d in dets for i in d.layers}),
        "tokens": args.tokens,
        "rounds": args.rounds,
        "target": TARGET,
        "results": results,
        "ratios": ratios,
        "peak_rss_mib": memory,
        "cpus": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for k, v in ratios.items():
        print(f"{k:22} {v:.3f}x of plain generate")
    print(f"peak RSS: plain {memory['plain']} MiB, guard on {memory['guard_on']} MiB "
          f"({memory['ratio']:.3f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
