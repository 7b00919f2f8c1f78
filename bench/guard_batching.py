"""What request batching buys the guard: N concurrent requests through the server's batcher with
``max_batch=N`` against ``max_batch=1`` (one request at a time), same model, prompts and tokens.

The requests go through :class:`tripwire.guard.batching.Batcher` exactly as the HTTP server
submits them (no HTTP, so the figure is the engine's); greedy, ``--tokens`` tokens each, with no
detector and with one probe reading a middle layer at every token. Prints generated tokens/s
(counted from the answers) and the ratio batched / one-at-a-time for each; ``--json`` prints
them as JSON.

    python bench/guard_batching.py                       # the embedded SmolLM2-135M, 8 requests
    python bench/guard_batching.py --requests 4 --tokens 16 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.guard import Guard, load_detector
from tripwire.guard.batching import Batcher
from tripwire.guard.engine import Finish
from tripwire.models import load_model
from tripwire.whitebox import DiffMeans
from tripwire.whitebox.datasets import neutral_prompts


async def _serve_all(guard: Guard, bodies: list[dict[str, Any]], max_batch: int) -> float:
    """Generated tokens per second for ``bodies`` submitted at once."""
    batcher = Batcher(guard, window_ms=5.0, max_batch=max_batch)
    batcher.start()
    start = time.perf_counter()
    tickets = [batcher.submit(guard.prepare(b)) for b in bodies]
    tokens = 0
    for t in tickets:
        while (event := await t.events.get()) is not None:
            tokens += event.n_tokens if isinstance(event, Finish) else 0
    seconds = time.perf_counter() - start
    await batcher.stop()
    return tokens / seconds


def _probe(lm: Any, folder: Path) -> str:
    rng = np.random.default_rng(0)
    DiffMeans().fit(rng.standard_normal((8, lm.d_model)), [0, 1] * 4).save(folder / "probe")
    return f"{folder / 'probe'}:{lm.n_layers // 2}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs; the best is kept")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    lm = load_model(args.model, device=args.device)
    prompts = neutral_prompts()[: args.requests]
    bodies = [
        {"messages": [{"role": "user", "content": p}], "max_tokens": args.tokens, "temperature": 0}
        for p in prompts
    ]
    results: dict[str, Any] = {
        "model": args.model,
        "requests": args.requests,
        "tokens": args.tokens,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory() as tmp:
        probe = load_detector(_probe(lm, Path(tmp)))
        for label, dets in (("no_detector", []), ("one_probe", [probe])):
            guard = Guard(lm, dets)
            asyncio.run(_serve_all(guard, bodies[:1], 1))  # warm-up
            # Alternate the two, best of --rounds each: a shared CPU's load moves under a run.
            one = batched = 0.0
            for _ in range(args.rounds):
                one = max(one, asyncio.run(_serve_all(guard, bodies, 1)))
                batched = max(batched, asyncio.run(_serve_all(guard, bodies, args.requests)))
            results[label] = {
                "one_at_a_time_tok_s": one,
                "batched_tok_s": batched,
                "ratio": batched / one,
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for label in ("no_detector", "one_probe"):
        r = results[label]
        print(
            f"{label}: one at a time {r['one_at_a_time_tok_s']:.1f} tok/s, batched "
            f"{r['batched_tok_s']:.1f} tok/s ({r['ratio']:.2f}x)"
        )


if __name__ == "__main__":
    main()
