"""Honeypot CUSUM in simulation: detection delay and false demotion rate, in honeypots shown.

    python bench/honeypots.py

For each alarm level h: an honest monitor that misses honeypots at p0 = 5% (the design value),
over a horizon of 2,000 honeypots (100,000 events at the default 2% honeypot rate), and a
compromised monitor that misses 100% / 50% / 30% of them from the start. Delay in honeypots;
multiply by 1 / rate for events.
"""

from __future__ import annotations

from tripwire.runtime.honeypots import choose_h, simulate

P0, P1, HORIZON, RUNS = 0.05, 0.5, 2000, 2000


def main() -> None:
    h_auto = choose_h(P0, P1, max_false_rate=0.01, horizon=HORIZON, runs=RUNS)
    print(f"p0={P0} p1={P1} horizon={HORIZON} honeypots, {RUNS} runs each")
    print(f"choose_h(false demotion <= 1%) -> h = {h_auto}")
    print(
        f"{'h':>5} {'false demotion':>15} {'miss 100%: mean/p95/max':>25} "
        f"{'miss 50%: mean/p95':>19} {'miss 30%: mean/p95':>19}"
    )
    for h in sorted({2.0, 4.0, 6.0, 8.0, h_auto}):
        full = simulate(P0, P1, h, 1.0, HORIZON, RUNS, seed=1)
        half = simulate(P0, P1, h, 0.5, HORIZON, RUNS, seed=2)
        third = simulate(P0, P1, h, 0.3, HORIZON, RUNS, seed=3)
        print(
            f"{h:>5} {full.false_demotion_rate:>15.4f} "
            f"{full.mean_delay:>11.1f}/{full.p95_delay:.0f}/{full.max_delay:<8} "
            f"{half.mean_delay:>12.1f}/{half.p95_delay:<6.0f} "
            f"{third.mean_delay:>12.1f}/{third.p95_delay:<6.0f}"
        )


if __name__ == "__main__":
    main()
