"""Benchmark: hook capture of a few layers at the last token vs ``output_hidden_states``.

The baseline is what many probing codebases do: run the model with
``output_hidden_states=True`` (every layer, every position), then index. Both run in this
process on the same random-weight model of a real shape and the same batches; we print the
ratios. Run: ``python bench/capture.py [--device cuda] [--shape smollm2-135m|llama-1b]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

SHAPES: dict[str, dict[str, Any]] = {
    # SmolLM2-135M's published shape, and a Llama-3.2-1B-like shape.
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
    ),
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
}


def build(shape: str, device: str, dtype: torch.dtype) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    from tripwire.models import from_pretrained_objects

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape], tie_word_embeddings=True)).to(
        device, dtype
    )

    class _Tok:  # minimal tokenizer stand-in: capture() receives token ids via this shim
        pad_token_id = 0
        pad_token = "<pad>"
        eos_token = "<pad>"
        padding_side = "right"

    return from_pretrained_objects(model, _Tok(), spec=f"random-{shape}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    lm = build(args.shape, args.device, dtype)
    n_layers = lm.n_layers
    layers = [n_layers // 2]
    from tripwire.whitebox.capture import _Batch, _reduce, block_output, forward_kwargs

    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.batches):
        ids = torch.randint(5, 1000, (args.batch, args.seq), generator=g)
        att = torch.ones_like(ids)
        lens = torch.randint(args.seq // 2, args.seq + 1, (args.batch,), generator=g)
        for b, n in enumerate(lens.tolist()):
            att[b, n:] = 0
        batches.append((ids.to(args.device), att.to(args.device)))

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def ours() -> int:
        kept = 0
        blocks = lm.blocks
        for ids, att in batches:
            read = torch.zeros_like(att, dtype=torch.bool)
            last = att.sum(1) - 1
            read[torch.arange(len(ids)), last] = True
            batch = _Batch(ids, att, read, "last")
            store: list[torch.Tensor] = []

            def hook(m: Any, a: Any, o: Any, batch: Any = batch, store: Any = store) -> None:
                store.append(_reduce(block_output(o), batch).float().cpu())
                raise StopIteration

            h = blocks[layers[0]].register_forward_hook(hook)
            try:
                with torch.inference_mode():
                    lm.model(**forward_kwargs(lm.model, ids, att))
            except StopIteration:
                pass
            finally:
                h.remove()
            kept += sum(t.numel() * 4 for t in store)
        sync()
        return kept

    def baseline() -> int:
        kept = 0
        for ids, att in batches:
            with torch.inference_mode():
                out = lm.model(input_ids=ids, attention_mask=att, output_hidden_states=True)
            hs = out.hidden_states
            kept += sum(h.numel() * h.element_size() for h in hs)  # what the call materialised
            last = att.sum(1) - 1
            _ = hs[layers[0] + 1][torch.arange(len(ids)), last].float().cpu()
        sync()
        return kept

    fns = {"hooks": ours, "output_hidden_states": baseline}
    for fn in fns.values():
        fn()  # warm-up
    # Alternate the two in every repeat so load on a shared machine hits both alike.
    times: dict[str, list[float]] = {name: [] for name in fns}
    kept: dict[str, int] = {}
    mem: dict[str, int] = {name: 0 for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            kept[name] = fn()
            times[name].append(time.perf_counter() - t0)
            if args.device.startswith("cuda"):
                mem[name] = max(mem[name], torch.cuda.max_memory_allocated())
    results = {name: (statistics.median(times[name]), kept[name], mem[name]) for name in fns}
    n_tok = args.batches * args.batch * args.seq
    print(
        f"shape={args.shape} device={args.device} dtype={dtype} layers={n_layers} "
        f"batch={args.batch}x{args.seq} batches={args.batches}"
    )
    for name, (t, kept, mem) in results.items():
        extra = f" peak_gpu={mem / 2**20:.0f} MiB" if mem else ""
        print(
            f"{name:22} {t:8.3f} s  {n_tok / t:10.0f} tok/s  "
            f"activations={kept / 2**20:8.1f} MiB{extra}"
        )
    (t_h, k_h, m_h), (t_b, k_b, m_b) = results["hooks"], results["output_hidden_states"]
    print(
        f"speed-up vs baseline: {t_b / t_h:.2f}x; activation memory: {k_b / max(k_h, 1):.0f}x less"
        + (f"; peak GPU memory: {m_b / m_h:.2f}x less" if m_h else "")
    )


if __name__ == "__main__":
    main()
