"""Benchmark: reading the residual stream through the public ``capture()`` vs a plain forward,
and vs the two toolkits users would otherwise reach for (nnsight, TransformerLens), in one run.

Every contender reads the same batches (``--batch`` prompts of about ``--seq`` tokens, built from
the shipped neutral prompts and padded by ``capture``'s own rules) from the same model:

* ``plain_forward`` (the baseline): the model's decoder body on the token ids, nothing read;
* ``tripwire_one_layer``: ``capture(texts, layers=[last block], positions="last")`` - the public
  call, tokenisation included (the baseline gets its ids for free);
* ``tripwire_all_layers``: the same for every block;
* ``nnsight``: ``NNsight(model).trace(...)`` saving the last block's output at the last token (the
  trace runs the whole model, LM head included, as a plain ``trace`` does);
* ``transformer_lens``: ``TransformerBridge.boot_transformers(..., hf_model=a copy)`` and
  ``run_with_cache(names_filter=<last block's hook_out>)`` (TransformerLens switches its copy
  to eager attention so that hooks see attention patterns: that is what its users get).

Each is reported as a throughput ratio to the baseline, measured interleaved (every repeat runs
every contender once, in turn) so load on a shared machine hits all alike; medians of
``--repeats``. Equal depth: every contender runs all blocks, so 1.0 is the ceiling.

Run: ``python bench/capture.py [--model smollm2-135m] [--device cuda] [--json]``; the peers come
with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from tripwire.models import load_model
from tripwire.whitebox import capture
from tripwire.whitebox.capture import _pad, _tokenize, forward_kwargs
from tripwire.whitebox.datasets import neutral_prompts

HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # a label for TransformerLens; weights are ours


def texts_of(lm: Any, n: int, seq: int) -> list[str]:
    """``n`` texts of about ``seq`` tokens each, cut from the shipped neutral prompts."""
    pool = " ".join(neutral_prompts())
    ids = lm.tokenizer(pool, add_special_tokens=False)["input_ids"]
    if len(ids) < n * seq:
        ids = ids * (n * seq // len(ids) + 1)
    return [lm.tokenizer.decode(ids[k * seq : (k + 1) * seq]) for k in range(n)]


def _peers() -> tuple[Any, Any]:
    try:
        from nnsight import NNsight
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        sys.exit(f"bench/capture.py: {exc.name} is missing; run pip install -e '.[bench]'")
    return NNsight, TransformerBridge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="model spec (default: embedded)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=126)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    NNsight, TransformerBridge = _peers()
    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    lm = load_model(args.model, dtype=dtype, device=args.device)
    texts = texts_of(lm, args.batch, args.seq)
    n_layers = lm.n_layers
    last_block = n_layers - 1
    # The batch exactly as capture() builds it, for the contenders that take token ids.
    batch = _pad(lm, [_tokenize(lm, t, None, "last") for t in texts], "last")
    ids, att = batch.input_ids.to(lm.device), batch.attention_mask.to(lm.device)
    last = (att.sum(1) - 1).to(lm.device)
    rows = torch.arange(len(ids), device=lm.device)
    body = lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else lm.model.model
    kwargs = forward_kwargs(body, ids, att)
    nn_model = NNsight(lm.model)
    blocks_path = nn_model.model.layers  # Llama-family layout (the embedded model)
    tl_model = copy.deepcopy(lm.model)
    bridge = TransformerBridge.boot_transformers(
        HF_NAME, hf_model=tl_model, tokenizer=lm.tokenizer, device=args.device
    )
    hook_name = f"blocks.{last_block}.hook_out"

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def plain() -> None:
        with torch.inference_mode():
            body(**kwargs)

    def one_layer() -> None:
        capture(lm, texts, layers=[last_block], positions="last", batch_size=args.batch)

    def all_layers() -> None:
        capture(lm, texts, layers=None, positions="last", batch_size=args.batch)

    def nnsight() -> None:
        with torch.inference_mode(), nn_model.trace(ids, attention_mask=att):
            out = blocks_path[last_block].output
            hidden = out[0] if isinstance(out, tuple) else out
            hidden[rows, last].save()

    def transformer_lens() -> None:
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(
                ids, attention_mask=att, names_filter=hook_name, return_cache_object=False
            )
        _ = cache[hook_name][rows, last].float().cpu()

    fns: dict[str, Callable[[], None]] = {
        "plain_forward": plain,
        "tripwire_one_layer": one_layer,
        "tripwire_all_layers": all_layers,
        "nnsight": nnsight,
        "transformer_lens": transformer_lens,
    }
    for fn in fns.values():
        fn()  # warm-up
        sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    n_tok = int(att.sum())
    base = med["plain_forward"]
    ratios = {name: round(base / t, 3) for name, t in med.items() if name != "plain_forward"}
    result = {
        "model": lm.name,
        "device": args.device,
        "dtype": dtype,
        "batch": f"{len(texts)}x{ids.shape[1]}",
        "tokens": n_tok,
        "repeats": args.repeats,
        "tok_per_s": {name: round(n_tok / t, 1) for name, t in med.items()},
        "ratios": ratios,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"model={lm.name} device={args.device} dtype={dtype} batch={result['batch']}")
    for name, t in med.items():
        ratio = "baseline" if name == "plain_forward" else f"{ratios[name]:.3f}x"
        print(f"{name:22} {t:8.3f} s  {n_tok / t:9.1f} tok/s  {ratio}")


if __name__ == "__main__":
    main()
