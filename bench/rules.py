"""Adversarial-rule benchmark: the worst per-event rule time over crafted 64 KB inputs, for the
shipped rules engine (RE2) and for the engine before it (the same policy compiled with Python's
``re``, which backtracks).

    python bench/rules.py                    # 64,000-character inputs (the largest content
                                             # POST /v1/events accepts), a table
    python bench/rules.py --json
    python bench/rules.py --size 16000 --top 5

Inputs are built from the shipped policy itself: every literal word or symbol in every pattern
(``scp``, ``rm``, ``model``, ``>``, ``@`` ...) and a set of single characters (``>`` ``<`` space
``a`` ...), each repeated to ``--size`` characters bare, space-separated and line-separated:
near-misses that start a match at every position and never complete it. Each is sent as the
content of a ``write_file`` tool call, an event every pattern rule applies to.

The new engine is timed on every input at full size (median of ``--repeat`` runs). The old one
takes minutes on its worst inputs at full size, so it is screened on all of them at
``--screen-size`` and only the ``--top`` slowest are timed at full size (once each).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from typing import Any

from tripwire.runtime.events import Event
from tripwire.runtime.linear_re import is_linear
from tripwire.runtime.monitors.rules import RulesMonitor, load_policy

SINGLE = list("><  a-_/'\".:=@$#*\\\t")


def old_compiler(pattern: str) -> Any:
    """The engine before: Python's re, case-insensitive (kept here only, to measure it)."""
    return re.compile(pattern, re.IGNORECASE)


def literals(pattern: str) -> set[str]:
    """Words (2+ letters) and symbols a pattern contains literally, escapes removed."""
    bare = re.sub(r"\\[a-zA-Z]", " ", pattern)
    bare = re.sub(r"\[[^\]]*\]|\{[^}]*\}", " ", bare)
    words = set(re.findall(r"[A-Za-z0-9_]{2,}", bare))
    return words | set(re.findall(r"\\([^a-zA-Z0-9])", pattern)) | set(re.findall(r"[<>@:/]", bare))


def inputs(patterns: list[str], size: int) -> dict[str, str]:
    """Adversarial texts of exactly ``size`` characters, by a short label."""
    units: set[str] = set(SINGLE)
    for p in patterns:
        units |= literals(p)
    out: dict[str, str] = {}
    for u in sorted(units):
        for label, unit in ((u, u), (f"{u}+sp", u + " "), (f"{u}+nl", u + "\n")):
            out[label] = (unit * (size // len(unit) + 1))[:size]
    return out


def event(text: str) -> Event:
    return Event("bench", "tool_call", text, "write_file", None)


def timed(mon: RulesMonitor, ev: Event, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        mon.check_isolated(ev)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def slowest_rule(mon: RulesMonitor, text: str) -> str:
    costs = {}
    for rid, m in mon.matchers().items():
        t0 = time.perf_counter()
        m.search("write_file\n" + text)
        costs[rid] = time.perf_counter() - t0
    return max(costs, key=lambda k: costs[k])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64_000, help="characters per input")
    ap.add_argument("--screen-size", type=int, default=4_000, help="old engine's screening size")
    ap.add_argument("--top", type=int, default=3, help="old engine: inputs timed at full size")
    ap.add_argument("--repeat", type=int, default=3, help="new engine: runs per input (median)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    policy = load_policy()
    new = RulesMonitor(policy)
    old = RulesMonitor(policy, compiler=old_compiler)
    assert all(is_linear(m) for m in new.matchers().values())
    patterns = [p for r in policy.rules for p in r.patterns]
    full = inputs(patterns, a.size)

    after = {k: timed(new, event(t), a.repeat) for k, t in full.items()}
    a_worst = max(after, key=lambda k: after[k])
    small = inputs(patterns, a.screen_size)
    screen = {k: timed(old, event(t), 1) for k, t in small.items()}
    top = sorted(screen, key=lambda k: screen[k], reverse=True)[: a.top]
    before = {k: timed(old, event(full[k]), 1) for k in top}
    b_worst = max(before, key=lambda k: before[k])
    res = {
        "size": a.size,
        "patterns": len(patterns),
        "inputs": len(full),
        "after": {
            "engine": "re2",
            "worst_s": after[a_worst],
            "input": a_worst,
            "rule": slowest_rule(new, full[a_worst]),
            "mean_s": statistics.fmean(after.values()),
        },
        "before": {
            "engine": "python re",
            "worst_s": before[b_worst],
            "input": b_worst,
            "rule": slowest_rule(old, small[b_worst]),
            "screen_size": a.screen_size,
        },
        "top": [
            {"input": k, "before_s": before[k], "after_s": after[k], "ratio": before[k] / after[k]}
            for k in top
        ],
        "ratio": before[b_worst] / after[a_worst],
    }
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{len(patterns)} shipped patterns, {len(full)} adversarial inputs of {a.size} chars")
    print(f"{'input':>12} {'before (re) s':>14} {'after (RE2) ms':>15} {'ratio':>10}")
    for row in res["top"]:
        print(
            f"{row['input']!r:>12} {row['before_s']:>14.3f} {row['after_s'] * 1e3:>15.2f} "
            f"{row['ratio']:>10.0f}"
        )
    b, n = res["before"], res["after"]
    print(f"worst per event, before: {b['worst_s']:.3f} s ({b['input']!r}, rule {b['rule']})")
    print(
        f"worst per event, after:  {n['worst_s'] * 1e3:.2f} ms ({n['input']!r}, rule {n['rule']})"
    )
    print(f"ratio (worst before / worst after): {res['ratio']:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
